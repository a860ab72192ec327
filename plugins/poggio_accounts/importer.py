"""CSV import of accounts: ``domain,name,industry,employees,country,description``."""

from __future__ import annotations

import re

from poggio import CsvKind, hookimpl, utcnow
from poggio_accounts.models import Account, insert_accounts, normalise_domain

COLUMNS = ("domain", "name", "industry", "employees", "country", "description")
_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def validate(workspace_id: int, rows):
    cleaned, errors = [], []
    existing = {d for (d,) in Account.select(Account.domain).where(Account.workspace == workspace_id).tuples()}
    in_file: dict[str, int] = {}
    for line, row in rows:
        domain = normalise_domain(row["domain"])
        if not _DOMAIN.match(domain):
            errors.append((line, "domain", f"{row['domain']!r} is not a domain such as example.com"))
            continue
        if domain in existing:
            errors.append((line, "domain", f"an account with domain {domain} already exists"))
            continue
        if domain in in_file:
            errors.append((line, "domain", f"{domain} already appears on line {in_file[domain]}"))
            continue
        in_file[domain] = line
        name = row["name"].strip()
        if not name or len(name) > 200:
            errors.append((line, "name", "required, at most 200 characters"))
            continue
        employees = row["employees"].strip().replace(",", "")
        if employees and not employees.isdigit():
            errors.append((line, "employees", f"{row['employees']!r} is not a whole number"))
            continue
        country = row["country"].strip().upper()
        if country and not re.fullmatch(r"[A-Z]{2}", country):
            errors.append((line, "country", f"{row['country']!r} is not a two-letter country code"))
            continue
        industry = row["industry"].strip()
        if len(industry) > 100:
            errors.append((line, "industry", "at most 100 characters"))
            continue
        cleaned.append({"domain": domain, "name": name, "industry": industry,
                        "employees": int(employees) if employees else None, "country": country,
                        "description": row["description"].strip()})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    now = utcnow()
    for start in range(0, len(cleaned), 1000):
        insert_accounts(workspace_id, cleaned[start:start + 1000], now)
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="accounts", columns=COLUMNS, validate=validate, write=write)]
