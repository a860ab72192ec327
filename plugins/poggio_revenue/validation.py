"""The checks an opportunity's fields pass, from a CSV file (``poggio import opportunities``) or a
write tool (``create_opportunity``, ``update_opportunity``): one set, each raising
:class:`poggio.ToolError` that names the field and what it accepts."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from poggio import ToolError
from poggio_revenue.models import STAGES

MAX_AMOUNT = Decimal("1e12")


def clean_name(value) -> str:
    name = ("" if value is None else str(value)).strip()
    if not name or len(name) > 200:
        raise ToolError("name", "required, at most 200 characters")
    return name


def clean_stage(value) -> str:
    stage = ("" if value is None else str(value)).strip().lower()
    if stage not in STAGES:
        raise ToolError("stage", f"{value!r} is not one of {', '.join(STAGES)}")
    return stage


def clean_amount(value) -> Decimal:
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip().replace(",", ""))
        if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise ToolError(
            "amount", f"{str(value)!r} is not an amount such as 12500.00 (0 or more, below 1,000,000,000,000)"
        ) from None
    return amount.quantize(Decimal("0.01"))


def clean_currency(value) -> str:
    currency = ("" if value is None else str(value)).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ToolError("currency", f"{value!r} is not a three-letter currency code (ISO 4217, e.g. USD, EUR)")
    return currency


def clean_close_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(("" if value is None else str(value)).strip())
    except ValueError:
        raise ToolError("close_date", f"{value!r} is not a date (YYYY-MM-DD)") from None


FIELDS = {
    "name": clean_name,
    "stage": clean_stage,
    "amount": clean_amount,
    "currency": clean_currency,
    "close_date": clean_close_date,
}


def clean_fields(values: dict) -> dict:
    """The given fields cleaned, in the order a CSV row is read (those left out stay out)."""
    return {field: FIELDS[field](values[field]) for field in FIELDS if field in values}
