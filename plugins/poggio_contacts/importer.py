"""CSV import of contacts: ``email,first_name,last_name,title,account_domain``."""

from __future__ import annotations

from poggio import CsvKind, ToolError, hookimpl
from poggio_accounts import Account, normalise_domain
from poggio_contacts.models import Contact, insert_contacts
from poggio_contacts.validation import clean_email, clean_fields

COLUMNS = ("email", "first_name", "last_name", "title", "account_domain")


def validate(workspace_id: int, rows):
    cleaned, errors = [], []
    accounts = dict(Account.select(Account.domain, Account.id).where(Account.workspace == workspace_id).tuples())
    existing = {e for (e,) in Contact.select(Contact.email).where(Contact.workspace == workspace_id).tuples()}
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
    for start in range(0, len(cleaned), 1000):
        insert_contacts(workspace_id, cleaned[start:start + 1000])
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="contacts", columns=COLUMNS, validate=validate, write=write)]
