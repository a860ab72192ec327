"""CSV import of opportunities: ``account_domain,name,stage,amount,currency,close_date``."""

from __future__ import annotations

from poggio import CsvKind, ToolError, existing_keys, hookimpl, utcnow
from poggio_accounts import Account, normalise_domain
from poggio_revenue.models import insert_opportunities
from poggio_revenue.validation import clean_fields

COLUMNS = ("account_domain", "name", "stage", "amount", "currency", "close_date")


def validate(workspace_id: int, rows):
    """One chunk of the file (accounts looked up for its domains only)."""
    cleaned, errors = [], []
    accounts = dict(
        existing_keys(
            Account.domain,
            {normalise_domain(row["account_domain"]) for _, row in rows},
            Account.workspace,
            workspace_id,
        )
    )
    for line, row in rows:
        try:
            domain = normalise_domain(row["account_domain"])
            if domain not in accounts:
                raise ToolError(
                    "account_domain", f"no account with domain {domain or '(empty)'}; import accounts first"
                )
            fields = clean_fields({c: row[c] for c in COLUMNS if c != "account_domain"})
        except ToolError as exc:
            errors.append((line, exc.field, exc.message))
            continue
        cleaned.append({"account": accounts[domain], **fields})
    return cleaned, errors


def write(workspace_id: int, cleaned) -> int:
    insert_opportunities(workspace_id, cleaned, utcnow())
    return len(cleaned)


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="opportunities", columns=COLUMNS, validate=validate, write=write)]
