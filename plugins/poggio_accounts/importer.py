"""CSV import of accounts: ``domain,name,industry,employees,country,description``."""

from __future__ import annotations

from poggio import CsvKind, ToolError, existing_keys, hookimpl, utcnow
from poggio_accounts.models import Account, insert_accounts, normalise_domain
from poggio_accounts.validation import clean_domain, clean_fields

COLUMNS = ("domain", "name", "industry", "employees", "country", "description")


def validate(workspace_id: int, rows):
    """One chunk of the file; the earlier chunks are in the database already."""
    cleaned, errors = [], []
    domains = {line: normalise_domain(row["domain"]) for line, row in rows}
    existing = {d for d, _ in existing_keys(Account.domain, set(domains.values()), Account.workspace, workspace_id)}
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
    insert_accounts(workspace_id, cleaned, utcnow())
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="accounts", columns=COLUMNS, validate=validate, write=write)]
