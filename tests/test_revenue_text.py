"""What people read in the revenue tools: money in one format everywhere, overdue deals apart from
the ones still to close, and a demo whose dates move with today."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from helpers import Mcp
from hypothesis import given, settings
from hypothesis import strategies as st
from instances import ServerProcess

from poggio.commands import demo
from poggio.commands.csv_import import import_csv
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.storage.db import utcnow


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        (Decimal("482500"), "USD", "USD 482,500.00"),
        (Decimal("81750.00"), "EUR", "EUR 81,750.00"),
        (Decimal("0"), "GBP", "GBP 0.00"),
        (Decimal("999.995"), "CHF", "CHF 1,000.00"),
        (Decimal("1250000"), "JPY", "JPY 1,250,000"),  # no minor unit
        (Decimal("12.5"), "jpy", "JPY 13"),
        (Decimal("-1500.5"), "USD", "USD -1,500.50"),
        (1234567, "USD", "USD 1,234,567.00"),
    ],
)
def test_format_money(amount, currency, expected):
    from poggio import format_money  # the one helper every pack's text uses

    assert format_money(amount, currency) == expected


@settings(max_examples=300, deadline=None)
@given(
    amount=st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12),
        st.integers(-(10**12), 10**12),
        st.floats(-1e9, 1e9, allow_nan=False),
    ),
    currency=st.sampled_from(["USD", "jpy", " eur ", "KRW", "CHF"]),
)
def test_format_money_is_the_plain_rule(amount, currency):
    """Its quick path for Decimals gives what the plain rule gives: str, Decimal, quantize, format."""
    from decimal import ROUND_HALF_UP

    from poggio import format_money
    from poggio.runtime.money import ZERO_DECIMAL

    code = currency.strip().upper()
    places = 0 if code in ZERO_DECIMAL else 2
    value = Decimal(str(amount)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    assert format_money(amount, currency) == f"{code} {value:,.{places}f}"


def _day(days: int) -> str:
    return (utcnow().date() + dt.timedelta(days=days)).isoformat()


@pytest.fixture
def served(instance):
    registry = PackRegistry.load()
    ws = create_workspace("acme", "Acme", True, Actor.cli())
    rows = {
        "accounts": "domain,name,industry,employees,country,description\nexample.com,Example Corp,Software,120,US,\n",
        "opportunities": "account_domain,name,stage,amount,currency,close_date\n"
        f"example.com,Old Pilot,proposal,320500,USD,{_day(-20)}\n"
        f"example.com,Late Renewal,negotiation,81750.00,USD,{_day(-3)}\n"
        f"example.com,Expansion,qualification,482500,USD,{_day(30)}\n"
        f"example.com,Support plan,prospecting,1250000,JPY,{_day(60)}\n"
        f"example.com,Licence,won,12000,USD,{_day(-90)}\n"
        f"example.com,Lost deal,lost,5000,USD,{_day(-60)}\n",
    }
    for kind, text in rows.items():
        report = import_csv(registry, ws, kind, text.encode(), Actor.cli())
        assert not report.errors, report.errors
    server = ServerProcess(instance)
    yield Mcp(server.mcp_url, TokenService().create(ws, "reader", Actor.cli()).plaintext)
    server.stop()


def text(result) -> str:
    assert not result.is_error, result.content
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


RAW_AMOUNT = re.compile(r"(?<![\d,.])\d{4,}(?:\.\d+)?(?![\d-])")  # 482500, 81750.00; not 2026-01-01 or 482,500.00


def test_get_account_formats_money_and_splits_overdue_from_next_to_close(served):
    body = text(served.call("get_account", {"domain": "example.com"}))
    revenue = body[body.index("## Revenue") :]
    assert not RAW_AMOUNT.search(revenue.replace(_day(-20), "").replace(_day(-3), "")), revenue
    assert "open pipeline USD 884,750.00" in revenue and "won USD 12,000.00" in revenue, revenue
    overdue, upcoming = revenue.index("Overdue"), revenue.index("Next to close")
    assert overdue < upcoming, revenue
    overdue_part, upcoming_part = revenue[overdue:upcoming], revenue[upcoming:]
    assert "Old Pilot" in overdue_part and "Late Renewal" in overdue_part and "USD 320,500.00" in overdue_part
    assert "20 days late" in overdue_part and "3 days late" in overdue_part
    assert "Expansion" in upcoming_part and "USD 482,500.00" in upcoming_part and "JPY 1,250,000" in upcoming_part
    assert "Old Pilot" not in upcoming_part and "Late Renewal" not in upcoming_part
    data = served.call("get_account", {"domain": "example.com"}).structured_content["sections"]["revenue"]["data"]
    assert [o["name"] for o in data["open_opportunities"]] == ["Expansion", "Support plan"]
    assert [o["name"] for o in data["overdue_opportunities"]] == ["Old Pilot", "Late Renewal"]
    assert Decimal(data["open_opportunities"][0]["amount"]) == Decimal("482500")  # data is not the text's format


def test_revenue_summary_and_list_opportunities_read_the_same_way(served):
    summary = served.call("get_revenue_summary", {})
    body = text(summary)
    assert "USD: won USD 12,000.00, open pipeline USD 884,750.00 (USD 402,250.00 overdue)" in body, body
    assert "lost USD 5,000.00" in body and "JPY 1,250,000" in body and not RAW_AMOUNT.search(body), body
    usd = next(c for c in summary.structured_content["currencies"] if c["currency"] == "USD")
    assert Decimal(str(usd["open_pipeline"])) == Decimal("884750.00")
    assert Decimal(str(usd["overdue_pipeline"])) == Decimal("402250.00")
    listed = text(served.call("list_opportunities", {}))
    lines = {line.split(" ", 2)[2].split(" (")[0]: line for line in listed.splitlines()[1:]}
    assert lines["Old Pilot"].endswith("proposal, USD 320,500.00, overdue"), listed
    assert lines["Expansion"].endswith("qualification, USD 482,500.00"), listed
    assert lines["Licence"].endswith("won, USD 12,000.00"), listed  # a won deal in the past is not late
    page = served.call("list_opportunities", {"stage": "proposal"}).structured_content
    assert Decimal(str(page["opportunities"][0]["amount"])) == Decimal("320500")


def test_demo_dates_move_with_today_and_stay_deterministic(instance):
    from poggio_revenue.models import OPEN_STAGES, Opportunity

    registry = PackRegistry.load()
    one = demo.build(registry, "one", accounts=80, seed=5).workspace
    two = demo.build(registry, "two", accounts=80, seed=5).workspace
    rows = {
        ws.id: [
            (o.name, o.stage, o.amount, o.currency, o.close_date)
            for o in Opportunity.select().where(Opportunity.workspace == ws).order_by(Opportunity.id)
        ]
        for ws in (one, two)
    }
    assert rows[one.id] == rows[two.id] and len(rows[one.id]) > 80
    today = utcnow().date()
    closed = [r for r in rows[one.id] if r[1] not in OPEN_STAGES]
    still_open = [r for r in rows[one.id] if r[1] in OPEN_STAGES]
    assert all(today - dt.timedelta(days=730) <= r[4] < today for r in closed)
    upcoming = [r for r in still_open if r[4] >= today]
    overdue = [r for r in still_open if r[4] < today]
    assert all(r[4] <= today + dt.timedelta(days=366) for r in upcoming)
    assert all(r[4] >= today - dt.timedelta(days=120) for r in overdue)
    assert 0.05 <= len(overdue) / len(still_open) <= 0.35, (len(overdue), len(still_open))
    assert sum(r[4] <= today + dt.timedelta(days=90) for r in upcoming) >= len(upcoming) / 3  # the coming weeks
    assert all(r[0].endswith(str(r[4].year)) for r in rows[one.id])  # names carry the close date's year


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["USD", "EUR", "JPY"]),
            st.sampled_from(["prospecting", "qualification", "proposal", "negotiation", "won", "lost"]),
            st.integers(1, 10**6),
            st.one_of(st.integers(0, 10**12), st.floats(0, 1e12, allow_nan=False), st.decimals(0, 10**12, places=3)),
            st.integers(0, 10),
            st.integers(0, 10**9),
        ),
        max_size=12,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_profile_section_totals_are_the_summary_models_json(rows):
    """get_account's revenue section writes each currency's totals as plain JSON directly: it must be
    exactly what get_revenue_summary's CurrencySummary model dumps."""
    from poggio_revenue.tools import _fold

    _, currencies, _ = _fold(rows)
    for totals in currencies:
        assert totals.plain() == totals.model().model_dump(mode="json")
