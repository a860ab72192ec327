"""Tools of the revenue pack: ``get_revenue_summary`` and ``list_opportunities``, and the profile section."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Annotated, Literal

from peewee import SQL, fn
from pydantic import BaseModel, Field

from poggio import (
    Cursor,
    Limit,
    Page,
    Prepared,
    ToolContext,
    ToolError,
    ToolResult,
    format_money,
    hookimpl,
    keyset_page,
    page_text,
    slot,
    tool,
    utcnow,
)
from poggio_accounts import Account, ProfileSection, account_id, normalise_domain
from poggio_revenue.models import OPEN_STAGES, STAGES, Opportunity, RevenueDay

Stage = Literal["prospecting", "qualification", "proposal", "negotiation", "won", "lost"]
AccountDomain = Annotated[str | None, Field(max_length=253, description="Only the account with this domain, e.g. example.com.")]
After = Annotated[dt.date | None, Field(description="Only opportunities closing on or after this date (YYYY-MM-DD).")]
Before = Annotated[dt.date | None, Field(description="Only opportunities closing on or before this date (YYYY-MM-DD).")]


class StageTotal(BaseModel):
    count: int
    amount: Decimal


class CurrencySummary(BaseModel):
    currency: str
    won: Decimal = Field(description="Total amount of won opportunities.")
    lost: Decimal
    open_pipeline: Decimal = Field(description="Total amount of opportunities still open.")
    overdue_pipeline: Decimal = Field(description="The part of open_pipeline whose close date has passed.")
    win_rate: float | None = Field(description="Won / (won + lost) by count; null when nothing closed yet.")
    stages: dict[str, StageTotal]


class RevenueSummary(BaseModel):
    account_domain: str | None
    closing_after: dt.date | None
    closing_before: dt.date | None
    opportunities: int
    currencies: list[CurrencySummary]


class OpportunityOut(BaseModel):
    id: int
    name: str
    stage: str
    amount: Decimal
    currency: str
    close_date: dt.date
    account_domain: str
    account_name: str


OpportunityPage = Page.of(OpportunityOut, "opportunities")


def _check_range(after: dt.date | None, before: dt.date | None) -> None:
    if after and before and after > before:
        raise ToolError("closing_before", "must be on or after closing_after")


def _today() -> dt.date:
    """The day that separates overdue deals from those still to close (UTC, like every stored time)."""
    return utcnow().date()


@functools.cache
def _totals_query(by_account: bool, after: bool, before: bool, overdue: bool = False) -> Prepared:
    """Count and amount per currency and stage, for one combination of filters: one account's from
    its opportunities, the workspace's from the day totals (a few thousand rows at any size).
    ``overdue``: only the open stages, closing before ``today``."""
    def build():
        if by_account:
            q = (Opportunity.select(Opportunity.currency, Opportunity.stage, fn.COUNT(SQL("*")), fn.SUM(Opportunity.amount))
                 .where((Opportunity.workspace == slot("workspace")) & (Opportunity.account == slot("account"))))
            source = Opportunity
        else:
            q = (RevenueDay.select(RevenueDay.currency, RevenueDay.stage, fn.SUM(RevenueDay.count), fn.SUM(RevenueDay.amount))
                 .where(RevenueDay.workspace == slot("workspace")))
            source = RevenueDay
        if after:
            q = q.where(source.close_date >= slot("after", source.close_date))
        if before:
            q = q.where(source.close_date <= slot("before", source.close_date))
        if overdue:
            q = q.where(source.stage.in_(OPEN_STAGES) & (source.close_date < slot("today", source.close_date)))
        return q.group_by(source.currency, source.stage).tuples()
    return Prepared(build)


def _open_deals(upcoming: bool) -> Prepared:
    """An account's first five open deals by close date: from today on, or those already late."""
    def build():
        day = Opportunity.close_date >= slot("today", Opportunity.close_date) if upcoming else \
            Opportunity.close_date < slot("today", Opportunity.close_date)
        return (Opportunity.select(Opportunity.name, Opportunity.stage, Opportunity.amount, Opportunity.currency,
                                   Opportunity.close_date)
                .where((Opportunity.workspace == slot("workspace")) & (Opportunity.account == slot("account"))
                       & Opportunity.stage.in_(OPEN_STAGES) & day)
                .order_by(Opportunity.close_date, Opportunity.id)
                .limit(5))
    return Prepared(build)


_NEXT_TO_CLOSE, _OVERDUE = _open_deals(upcoming=True), _open_deals(upcoming=False)


def _cents(amount) -> Decimal:
    return Decimal(str(amount or 0)).quantize(Decimal("0.01"))


def summarise(workspace_id: int, account_id: int | None, after=None, before=None, today: dt.date | None = None,
              ) -> tuple[int, list[CurrencySummary], int]:
    """(opportunities, per-currency summaries, how many open ones are overdue on ``today``)."""
    by_account = account_id is not None
    args = {"workspace": workspace_id, "account": account_id, "after": after, "before": before,
            "today": today or _today()}
    per: dict[str, dict[str, StageTotal]] = {}
    total = 0
    for currency, stage, count, amount in _totals_query(by_account, bool(after), bool(before)).run(**args):
        per.setdefault(currency, {})[stage] = StageTotal(count=count, amount=_cents(amount))
        total += count
    overdue: dict[str, Decimal] = {}
    late = 0
    for currency, _, count, amount in _totals_query(by_account, bool(after), bool(before), overdue=True).run(**args):
        overdue[currency] = overdue.get(currency, Decimal("0.00")) + _cents(amount)
        late += count
    zero = StageTotal(count=0, amount=Decimal("0.00"))
    out = []
    for currency in sorted(per, key=lambda c: -sum(s.amount for s in per[c].values())):
        stages = {s: per[currency].get(s, zero) for s in STAGES}
        won, lost = stages["won"], stages["lost"]
        closed = won.count + lost.count
        out.append(CurrencySummary(
            currency=currency, won=won.amount, lost=lost.amount,
            open_pipeline=sum((stages[s].amount for s in OPEN_STAGES), Decimal("0.00")),
            overdue_pipeline=overdue.get(currency, Decimal("0.00")),
            win_rate=round(won.count / closed, 3) if closed else None, stages=stages,
        ))
    return total, out, late


def _summary_text(total: int, currencies: list[CurrencySummary]) -> str:
    if not total:
        return "No opportunities."
    lines = [f"{total} opportunit{'y' if total == 1 else 'ies'}."]
    for c in currencies:
        money = functools.partial(format_money, currency=c.currency)
        rate = f", win rate {c.win_rate:.0%}" if c.win_rate is not None else ""
        late = f" ({money(c.overdue_pipeline)} overdue)" if c.overdue_pipeline else ""
        lines.append(f"- {c.currency}: won {money(c.won)}, open pipeline {money(c.open_pipeline)}{late}, "
                     f"lost {money(c.lost)}{rate}")
    return "\n".join(lines)


def _deal_line(o, note: str = "", account_name: str | None = None) -> str:
    """``- 2026-11-05 Old Pilot (Example Corp): proposal, USD 320,500.00, overdue``."""
    at = f" ({account_name})" if account_name else ""
    return f"- {o.close_date} {o.name}{at}: {o.stage}, {format_money(o.amount, o.currency)}" + (f", {note}" if note else "")


def _overdue(o, today: dt.date) -> bool:
    return o.stage in OPEN_STAGES and o.close_date < today


def _days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


@tool(title="Revenue summary")
def get_revenue_summary(
    ctx: ToolContext,
    account_domain: AccountDomain = None,
    closing_after: After = None,
    closing_before: Before = None,
) -> RevenueSummary:
    """Won revenue, open pipeline, lost amounts and win rate, per currency and per stage, for the
    whole workspace or one account, optionally for a range of close dates."""
    _check_range(closing_after, closing_before)
    total, currencies, _ = summarise(ctx.workspace_id, account_id(ctx, account_domain), closing_after, closing_before)
    summary = RevenueSummary(account_domain=normalise_domain(account_domain) if account_domain else None,
                             closing_after=closing_after, closing_before=closing_before,
                             opportunities=total, currencies=currencies)
    return ToolResult(summary, _summary_text(total, currencies))


@tool(title="List opportunities")
def list_opportunities(
    ctx: ToolContext,
    account_domain: AccountDomain = None,
    stage: Annotated[Stage | None, Field(description="Only opportunities in this stage.")] = None,
    closing_after: After = None,
    closing_before: Before = None,
    min_amount: Annotated[Decimal | None, Field(ge=0, le=10**12, max_digits=15, description="Only opportunities of at least this amount.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> OpportunityPage:
    """Opportunities (deals) ordered by close date, filtered by account, stage, close dates or amount.
    An open deal whose close date has passed is marked overdue in the text."""
    _check_range(closing_after, closing_before)
    account = account_id(ctx, account_domain)
    q = (Opportunity.select(Opportunity, Account).join(Account)
         .where(Opportunity.workspace == ctx.workspace_id))
    if account is not None:
        q = q.where(Opportunity.account == account)
    if stage:
        q = q.where(Opportunity.stage == stage)
    if closing_after:
        q = q.where(Opportunity.close_date >= closing_after)
    if closing_before:
        q = q.where(Opportunity.close_date <= closing_before)
    if min_amount is not None:
        q = q.where(Opportunity.amount >= min_amount)
    filters = {"account": account, "stage": stage, "after": closing_after, "before": closing_before, "min": min_amount}
    rows, next_cursor = keyset_page(ctx, q, [Opportunity.close_date, Opportunity.id], filters, cursor, limit)
    items = [OpportunityOut(id=o.id, name=o.name, stage=o.stage, amount=o.amount, currency=o.currency,
                            close_date=o.close_date, account_domain=o.account.domain, account_name=o.account.name)
             for o in rows]
    page = OpportunityPage(items=items, next_cursor=next_cursor)
    today = _today()
    text = page_text(page, lambda o: _deal_line(o, "overdue" if _overdue(o, today) else "", o.account_name),
                     "opportunity", "opportunities", first=cursor is None)
    return ToolResult(page, text)


@hookimpl
def poggio_account_profile(ctx: ToolContext, account: Account) -> ProfileSection:
    today = _today()
    total, currencies, late = summarise(ctx.workspace_id, account.id, today=today)
    args = {"workspace": ctx.workspace_id, "account": account.id, "today": today}
    overdue, upcoming = _OVERDUE.all(**args), _NEXT_TO_CLOSE.all(**args)
    text = _summary_text(total, currencies)
    if overdue:
        more = f", the first {len(overdue)}" if late > len(overdue) else ""
        text += f"\nOverdue: {late} open deal{'' if late == 1 else 's'} past the close date{more}:\n" + "\n".join(
            _deal_line(o, f"{_days((today - o.close_date).days)} late") for o in overdue)
    if upcoming:
        text += "\nNext to close:\n" + "\n".join(
            _deal_line(o, f"in {_days(n)}" if (n := (o.close_date - today).days) else "today") for o in upcoming)

    def out(rows):
        return [{"name": o.name, "stage": o.stage, "amount": str(o.amount), "currency": o.currency,
                 "close_date": o.close_date.isoformat()} for o in rows]
    return ProfileSection(key="revenue", title="Revenue", text=text, data={
        "opportunities": total,
        "currencies": [c.model_dump(mode="json") for c in currencies],
        "open_opportunities": out(upcoming),
        "overdue_opportunities": out(overdue),
    })


@hookimpl
def poggio_tools():
    return [get_revenue_summary, list_opportunities]
