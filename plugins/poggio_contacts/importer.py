"""CSV import of contacts: ``email,first_name,last_name,title,account_domain``."""

from __future__ import annotations

from poggio import CsvKind, ToolError, existing_keys, hookimpl
from poggio_accounts import Account, normalise_domain
from poggio_contacts.models import Contact, insert_contacts
from poggio_contacts.validation import clean_email, clean_fields

COLUMNS = ("email", "first_name", "last_name", "title", "account_domain")


def validate(workspace_id: int, rows):
    """One chunk of the file; the earlier chunks are in the database already."""
    cleaned, errors = [], []
    accounts = dict(
        existing_keys(
            Account.domain,
            {normalise_domain(row["account_domain"]) for _, row in rows},
            Account.workspace,
            workspace_id,
        )
    )
    existing = {
        e
        for e, _ in existing_keys(
            Contact.email, {row["email"].strip().lower() for _, row in rows}, Contact.workspace, workspace_id
        )
    }
    in_file: dict[str, int] = {}
    for line, row in rows:
        try:
            email = clean_email(row["email"])
            if email in existing:
                raise ToolError("email", f"a contact with e-mail {email} already exists")
            if email in in_file:
                raise ToolError("email", f"{email} already appears on line {in_file[email]}")
            in_file[email] = line
            domain = normalise_domain(row["account_domain"])
            if domain and domain not in accounts:
                raise ToolError("account_domain", f"no account with domain {domain}; import accounts first")
            fields = clean_fields({c: row[c] for c in ("first_name", "last_name", "title")})
        except ToolError as exc:
            errors.append((line, exc.field, exc.message))
            continue
        cleaned.append({"email": email, **fields, "account": accounts.get(domain)})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    insert_contacts(workspace_id, cleaned)
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="contacts", columns=COLUMNS, validate=validate, write=write)]
