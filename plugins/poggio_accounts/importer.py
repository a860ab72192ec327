"""CSV import of accounts: ``domain,name,industry,employees,country,description``."""

from __future__ import annotations

from poggio import CsvKind, ToolError, hookimpl, utcnow
from poggio_accounts.models import Account, insert_accounts
from poggio_accounts.validation import clean_domain, clean_fields

COLUMNS = ("domain", "name", "industry", "employees", "country", "description")


def validate(workspace_id: int, rows):
    cleaned, errors = [], []
    existing = {d for (d,) in Account.select(Account.domain).where(Account.workspace == workspace_id).tuples()}
    in_file: dict[str, int] = {}
    for line, row in rows:
        try:
            domain = clean_domain(row["domain"])
            if domain in existing:
                raise ToolError("domain", f"an account with domain {domain} already exists")
            if domain in in_file:
                raise ToolError("domain", f"{domain} already appears on line {in_file[domain]}")
            in_file[domain] = line
            fields = clean_fields({c: row[c] for c in COLUMNS if c != "domain"})
        except ToolError as exc:
            errors.append((line, exc.field, exc.message))
            continue
        cleaned.append({"domain": domain, **fields})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    now = utcnow()
    for start in range(0, len(cleaned), 1000):
        insert_accounts(workspace_id, cleaned[start:start + 1000], now)
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="accounts", columns=COLUMNS, validate=validate, write=write)]
