"""CSV import of contacts: ``email,first_name,last_name,title,account_domain``."""

from __future__ import annotations

import re

from poggio import CsvKind, hookimpl
from poggio_accounts import Account, normalise_domain
from poggio_contacts.models import Contact, insert_contacts

COLUMNS = ("email", "first_name", "last_name", "title", "account_domain")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def validate(workspace_id: int, rows):
    cleaned, errors = [], []
    accounts = dict(Account.select(Account.domain, Account.id).where(Account.workspace == workspace_id).tuples())
    existing = {e for (e,) in Contact.select(Contact.email).where(Contact.workspace == workspace_id).tuples()}
    in_file: dict[str, int] = {}
    for line, row in rows:
        email = row["email"].strip().lower()
        if not _EMAIL.match(email) or len(email) > 254:
            errors.append((line, "email", f"{row['email']!r} is not an e-mail address"))
            continue
        if email in existing:
            errors.append((line, "email", f"a contact with e-mail {email} already exists"))
            continue
        if email in in_file:
            errors.append((line, "email", f"{email} already appears on line {in_file[email]}"))
            continue
        in_file[email] = line
        domain = normalise_domain(row["account_domain"])
        if domain and domain not in accounts:
            errors.append((line, "account_domain", f"no account with domain {domain}; import accounts first"))
            continue
        too_long = [c for c, n in (("first_name", 100), ("last_name", 100), ("title", 150)) if len(row[c].strip()) > n]
        if too_long:
            errors.append((line, too_long[0], "too long"))
            continue
        cleaned.append({"email": email, "first_name": row["first_name"].strip(), "last_name": row["last_name"].strip(),
                        "title": row["title"].strip(), "account": accounts.get(domain)})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    for start in range(0, len(cleaned), 1000):
        insert_contacts(workspace_id, cleaned[start:start + 1000])
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="contacts", columns=COLUMNS, validate=validate, write=write)]
