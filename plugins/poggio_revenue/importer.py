"""CSV import of opportunities: ``account_domain,name,stage,amount,currency,close_date``."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from poggio import CsvKind, hookimpl, utcnow
from poggio_accounts import Account, normalise_domain
from poggio_revenue.models import STAGES, insert_opportunities

COLUMNS = ("account_domain", "name", "stage", "amount", "currency", "close_date")


def validate(workspace_id: int, rows):
    cleaned, errors = [], []
    accounts = dict(Account.select(Account.domain, Account.id).where(Account.workspace == workspace_id).tuples())
    for line, row in rows:
        domain = normalise_domain(row["account_domain"])
        if domain not in accounts:
            errors.append((line, "account_domain", f"no account with domain {domain or '(empty)'}; import accounts first"))
            continue
        name = row["name"].strip()
        if not name or len(name) > 200:
            errors.append((line, "name", "required, at most 200 characters"))
            continue
        stage = row["stage"].strip().lower()
        if stage not in STAGES:
            errors.append((line, "stage", f"{row['stage']!r} is not one of {', '.join(STAGES)}"))
            continue
        try:
            amount = Decimal(row["amount"].strip().replace(",", ""))
            if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
                raise InvalidOperation
        except InvalidOperation:
            errors.append((line, "amount", f"{row['amount']!r} is not an amount such as 12500.00"))
            continue
        currency = row["currency"].strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            errors.append((line, "currency", f"{row['currency']!r} is not a three-letter currency code"))
            continue
        try:
            close_date = dt.date.fromisoformat(row["close_date"].strip())
        except ValueError:
            errors.append((line, "close_date", f"{row['close_date']!r} is not a date (YYYY-MM-DD)"))
            continue
        cleaned.append({"account": accounts[domain], "name": name, "stage": stage,
                        "amount": amount.quantize(Decimal("0.01")), "currency": currency, "close_date": close_date})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    insert_opportunities(workspace_id, cleaned, utcnow())
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="opportunities", columns=COLUMNS, validate=validate, write=write)]
