"""Amounts as people read them: one format for every pack's text (structured content keeps numbers)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies without a minor unit; every other currency shows two decimals.
ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


def format_money(amount: Decimal | int | float | str, currency: str) -> str:
    """``USD 482,500.00``: the ISO currency code, thousands separators, the currency's decimals
    (two, none for JPY and the like), rounded half up."""
    code = currency.strip().upper()
    whole = code in ZERO_DECIMAL
    value = (amount if type(amount) is Decimal else Decimal(str(amount))).quantize(
        _UNIT if whole else _CENT, rounding=ROUND_HALF_UP
    )
    return f"{code} {value:,.0f}" if whole else f"{code} {value:,.2f}"


_UNIT, _CENT = Decimal(1), Decimal("0.01")
