"""Tools of the revenue pack: ``get_revenue_summary`` and ``list_opportunities`` read,
``create_opportunity`` and ``update_opportunity`` write; the profile section, and the opportunities
notes link to."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple

from peewee import SQL, Case, Value, fn
from pydantic import BaseModel, Field

from poggio import (
    MAX_ID,
    Cursor,
    IfUnmodifiedSince,
    Limit,
    Page,
    Timestamp,
    ToolContext,
    ToolError,
    ToolResult,
    changed_at,
    for_update,
    format_money,
    hookimpl,
    keyset_page,
    page_text,
    refuse_if_modified,
    tool,
    utcnow,
)
from poggio.advanced import Prepared, slot
from poggio_accounts import Account, ProfileSection, account_id, account_of, normalise_domain
from poggio_revenue.models import OPEN_STAGES, STAGES, Opportunity, RevenueDay, insert_opportunity, move_opportunity
from poggio_revenue.validation import clean_fields

Stage = Literal["prospecting", "qualification", "proposal", "negotiation", "won", "lost"]
AccountDomain = Annotated[
    str | None, Field(max_length=253, description="Only the account with this domain, e.g. example.com.")
]
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
    updated_at: Timestamp | None = Field(
        default=None,
        description="When the opportunity last changed: pass it as if_unmodified_since to update_opportunity.",
    )

    @classmethod
    def of(cls, o: Opportunity, account: Account) -> OpportunityOut:
        return cls(
            id=o.id,
            name=o.name,
            stage=o.stage,
            amount=o.amount,
            currency=o.currency,
            close_date=o.close_date,
            account_domain=account.domain,
            account_name=account.name,
            updated_at=o.updated_at,
        )


class OpportunityPage(Page[OpportunityOut]):
    model_config = Page.items_as("opportunities")


def _check_range(after: dt.date | None, before: dt.date | None) -> None:
    if after and before and after > before:
        raise ToolError("closing_before", "must be on or after closing_after")


def _today() -> dt.date:
    """The day that separates overdue deals from those still to close (UTC, like every stored time)."""
    return utcnow().date()


TOTALS, OVERDUE, UPCOMING = 0, 1, 2  # the parts of _PROFILE's rows


# Advanced API in the totals and the profile section below: get_revenue_summary and get_account run
# them; see benchmarks/README.md, "MCP throughput against the bare SDK, SQLite" (get_revenue_summary,
# get_account) and "The figures behind design decisions" (get_account's round trips on PostgreSQL).
def _totals(by_account: bool, after: bool, before: bool, padded: bool = False):
    """Count and amount per currency and stage, for one combination of filters, and of them the open
    ones closing before ``today`` (overdue: two conditional sums, so one statement answers both): one
    account's from its opportunities, the workspace's from the day totals (a few thousand rows at any
    size). Rows: (currency, stage, count, amount, overdue count, overdue amount); ``padded``: as
    :data:`_PROFILE` unites them with deals, (TOTALS, those six, NULL, NULL, NULL)."""
    source: type[Opportunity] | type[RevenueDay]
    if by_account:
        source = Opportunity
        columns = [fn.COUNT(SQL("*")), fn.SUM(Opportunity.amount), *_overdue_sums(Opportunity, 1, Opportunity.amount)]
    else:
        source = RevenueDay
        columns = [
            fn.SUM(RevenueDay.count),
            fn.SUM(RevenueDay.amount),
            *_overdue_sums(RevenueDay, RevenueDay.count, RevenueDay.amount),
        ]
    columns = [source.currency, source.stage, *columns]
    if padded:
        columns = [Value(TOTALS), *columns, SQL("NULL"), SQL("NULL"), SQL("NULL")]
    q = source.select(*columns).where(source.workspace == slot("workspace"))
    if by_account:
        q = q.where(Opportunity.account == slot("account"))  # by_account: source is Opportunity
    if after:
        q = q.where(source.close_date >= slot("after", source.close_date))
    if before:
        q = q.where(source.close_date <= slot("before", source.close_date))
    return q.group_by(source.currency, source.stage)


def _overdue_sums(source, count, amount) -> list:
    late = source.stage.in_(OPEN_STAGES) & (source.close_date < slot("today", source.close_date))
    return [fn.SUM(Case(None, [(late, count)], 0)), fn.SUM(Case(None, [(late, amount)], 0))]


@functools.cache
def _totals_query(by_account: bool, after: bool, before: bool) -> Prepared:
    return Prepared(lambda: _totals(by_account, after, before).tuples(), plan_once=by_account)


def _open_deals(part: int, upcoming: bool):
    """An account's first five open deals by close date: from today on, or those already late; the
    columns padded to the totals' (part, currency, stage, -, amount, -, -, name, close date, id)."""
    day = (
        Opportunity.close_date >= slot("today", Opportunity.close_date)
        if upcoming
        else Opportunity.close_date < slot("today", Opportunity.close_date)
    )
    return (
        Opportunity.select(
            Value(part),
            Opportunity.currency,
            Opportunity.stage,
            SQL("NULL"),
            Opportunity.amount,
            SQL("NULL"),
            SQL("NULL"),
            Opportunity.name,
            Opportunity.close_date,
            Opportunity.id,
        )
        .where(
            (Opportunity.workspace == slot("workspace"))
            & (Opportunity.account == slot("account"))
            & Opportunity.stage.in_(OPEN_STAGES)
            & day
        )
        .order_by(Opportunity.close_date, Opportunity.id)
        .limit(5)
    )


# An account's profile section in one statement (one round trip on PostgreSQL): its totals with the
# overdue sums, its first overdue deals and its next deals to close, told apart by the first column.
_PROFILE = Prepared(
    lambda: (
        _totals(True, False, False, padded=True)
        + _open_deals(OVERDUE, upcoming=False)
        + _open_deals(UPCOMING, upcoming=True)
    ).tuples(),
    plan_once=True,
)


class Deal(NamedTuple):
    name: str
    stage: str
    amount: Decimal
    currency: str
    close_date: dt.date


_CENT, _ZERO = Decimal("0.01"), Decimal("0.00")


def _cents(amount) -> Decimal:
    return Decimal(str(amount or 0)).quantize(_CENT)


class Totals(NamedTuple):
    """One currency's totals as :func:`_fold` adds them up (the fields of :class:`CurrencySummary`,
    ``stages`` as ``{stage: (count, amount)}``); a model only where a tool answers with one."""

    currency: str
    won: Decimal
    lost: Decimal
    open_pipeline: Decimal
    overdue_pipeline: Decimal
    win_rate: float | None
    stages: dict[str, tuple[int, Decimal]]

    def model(self) -> CurrencySummary:
        stages = {s: StageTotal(count=c, amount=a) for s, (c, a) in self.stages.items()}
        return CurrencySummary(**{**self._asdict(), "stages": stages})

    def plain(self) -> dict[str, Any]:
        """``self.model().model_dump(mode="json")``, written directly (a profile section's data)."""
        return {
            "currency": self.currency,
            "won": str(self.won),
            "lost": str(self.lost),
            "open_pipeline": str(self.open_pipeline),
            "overdue_pipeline": str(self.overdue_pipeline),
            "win_rate": self.win_rate,
            "stages": {s: {"count": c, "amount": str(a)} for s, (c, a) in self.stages.items()},
        }


def summarise(
    workspace_id: int,
    account_id: int | None,
    after=None,
    before=None,
    today: dt.date | None = None,
) -> tuple[int, list[Totals], int]:
    """(opportunities, per-currency totals, how many open ones are overdue on ``today``)."""
    args = {
        "workspace": workspace_id,
        "account": account_id,
        "after": after,
        "before": before,
        "today": today or _today(),
    }
    return _fold(_totals_query(account_id is not None, bool(after), bool(before)).run(**args))


def _fold(rows) -> tuple[int, list[Totals], int]:
    """:func:`summarise`'s answer from the rows of :func:`_totals`."""
    per: dict[str, dict[str, tuple[int, Decimal]]] = {}
    overdue: dict[str, Decimal] = {}
    total = late = 0
    for currency, stage, count, amount, late_count, late_amount in rows:
        per.setdefault(currency, {})[stage] = (count, _cents(amount))
        total += count
        if late_count:
            overdue[currency] = overdue.get(currency, _ZERO) + _cents(late_amount)
            late += late_count
    zero = (0, _ZERO)
    out = []
    for currency in sorted(per, key=lambda c: -sum(amount for _, amount in per[c].values())):
        stages = {s: per[currency].get(s, zero) for s in STAGES}
        (won, won_amount), (lost, lost_amount) = stages["won"], stages["lost"]
        closed = won + lost
        out.append(
            Totals(
                currency=currency,
                won=won_amount,
                lost=lost_amount,
                open_pipeline=sum((stages[s][1] for s in OPEN_STAGES), _ZERO),
                overdue_pipeline=overdue.get(currency, _ZERO),
                win_rate=round(won / closed, 3) if closed else None,
                stages=stages,
            )
        )
    return total, out, late


def _deals(rows, part: int) -> list[Deal]:
    """The deals of one part of :data:`_PROFILE`'s rows, by close date (a union keeps no order)."""
    amount, close_date = Opportunity.amount.python_value, Opportunity.close_date.python_value
    found = sorted((close_date(r[8]), r[9], r) for r in rows if r[0] == part)
    return [Deal(r[7], r[2], amount(r[4]) or Decimal(0), r[1], day) for day, _, r in found]


def _summary_text(total: int, currencies: list[Totals]) -> str:
    if not total:
        return "No opportunities."
    lines = [f"{total} opportunit{'y' if total == 1 else 'ies'}."]
    for c in currencies:
        money = functools.partial(format_money, currency=c.currency)
        rate = f", win rate {c.win_rate:.0%}" if c.win_rate is not None else ""
        late = f" ({money(c.overdue_pipeline)} overdue)" if c.overdue_pipeline else ""
        lines.append(
            f"- {c.currency}: won {money(c.won)}, open pipeline {money(c.open_pipeline)}{late}, "
            f"lost {money(c.lost)}{rate}"
        )
    return "\n".join(lines)


def _deal_line(o, note: str = "", account_name: str | None = None) -> str:
    """``- 2026-11-05 Old Pilot (Example Corp): proposal, USD 320,500.00, overdue``."""
    at = f" ({account_name})" if account_name else ""
    return f"- {o.close_date} {o.name}{at}: {o.stage}, {format_money(o.amount, o.currency)}" + (
        f", {note}" if note else ""
    )


def _overdue(o, today: dt.date) -> bool:
    return o.stage in OPEN_STAGES and o.close_date < today


def _days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


@tool(title="Revenue summary", app="ui://revenue/pipeline.html")
def get_revenue_summary(
    ctx: ToolContext,
    account_domain: AccountDomain = None,
    closing_after: After = None,
    closing_before: Before = None,
) -> ToolResult[RevenueSummary]:
    """Won revenue, open pipeline, lost amounts and win rate, per currency and per stage, for the
    whole workspace or one account, optionally for a range of close dates."""
    _check_range(closing_after, closing_before)
    total, currencies, _ = summarise(ctx.workspace_id, account_id(ctx, account_domain), closing_after, closing_before)
    summary = RevenueSummary(
        account_domain=normalise_domain(account_domain) if account_domain else None,
        closing_after=closing_after,
        closing_before=closing_before,
        opportunities=total,
        currencies=[c.model() for c in currencies],
    )
    return ToolResult(summary, _summary_text(total, currencies))


@tool(title="List opportunities")
def list_opportunities(
    ctx: ToolContext,
    account_domain: AccountDomain = None,
    stage: Annotated[Stage | None, Field(description="Only opportunities in this stage.")] = None,
    closing_after: After = None,
    closing_before: Before = None,
    min_amount: Annotated[
        Decimal | None, Field(ge=0, le=10**12, max_digits=15, description="Only opportunities of at least this amount.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ToolResult[OpportunityPage]:
    """Opportunities (deals) ordered by close date, filtered by account, stage, close dates or amount.
    An open deal whose close date has passed is marked overdue in the text."""
    _check_range(closing_after, closing_before)
    account = account_id(ctx, account_domain)
    q = Opportunity.select(Opportunity, Account).join(Account).where(Opportunity.workspace == ctx.workspace_id)
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
    items = [OpportunityOut.of(o, o.account) for o in rows]
    page = OpportunityPage(items=items, next_cursor=next_cursor)
    today = _today()
    text = page_text(
        page,
        lambda o: _deal_line(o, "overdue" if _overdue(o, today) else "", o.account_name),
        "opportunity",
        "opportunities",
        first=cursor is None,
    )
    return ToolResult(page, text)


@hookimpl
def poggio_account_profile(ctx: ToolContext, account: Account) -> ProfileSection:
    today = _today()
    rows = _PROFILE.run(workspace=ctx.workspace_id, account=account.id, today=today)
    total, currencies, late = _fold([r[1:7] for r in rows if r[0] == TOTALS])
    overdue, upcoming = _deals(rows, OVERDUE), _deals(rows, UPCOMING)
    text = _summary_text(total, currencies)
    if overdue:
        more = f", the first {len(overdue)}" if late > len(overdue) else ""
        text += f"\nOverdue: {late} open deal{'' if late == 1 else 's'} past the close date{more}:\n" + "\n".join(
            _deal_line(o, f"{_days((today - o.close_date).days)} late") for o in overdue
        )
    if upcoming:
        text += "\nNext to close:\n" + "\n".join(
            _deal_line(o, f"in {_days(n)}" if (n := (o.close_date - today).days) else "today") for o in upcoming
        )

    def out(rows):
        return [
            {
                "name": o.name,
                "stage": o.stage,
                "amount": str(o.amount),
                "currency": o.currency,
                "close_date": o.close_date.isoformat(),
            }
            for o in rows
        ]

    return ProfileSection(
        key="revenue",
        title="Revenue",
        text=text,
        data={
            "opportunities": total,
            "currencies": [c.plain() for c in currencies],
            "open_opportunities": out(upcoming),
            "overdue_opportunities": out(overdue),
        },
    )


@hookimpl
def poggio_note_link(ctx: ToolContext, account: Account, argument: str, value) -> str | None:
    if argument != "opportunity_id":
        return None
    deal = Opportunity.get_or_none((Opportunity.workspace == ctx.workspace_id) & (Opportunity.id == value))
    if deal is None or deal.account_id != account.id:
        raise ToolError(
            "opportunity_id",
            f"no opportunity {value} of {account.domain} in this workspace; list_opportunities shows their ids",
        )
    return f"opportunity {deal.id} {deal.name}"


StageArgument = Annotated[str, Field(max_length=20, description=f"One of {', '.join(STAGES)}.")]
AmountArgument = Annotated[
    Decimal, Field(ge=0, lt=10**12, max_digits=15, description="The deal's value, e.g. 12500.00.")
]
CurrencyArgument = Annotated[str, Field(max_length=3, description="ISO 4217 three-letter code, e.g. USD.")]
CloseDate = Annotated[dt.date, Field(description="When it closes (or closed), YYYY-MM-DD.")]


def _opportunity_text(verb: str, out: OpportunityOut) -> str:
    return f"{verb} opportunity {out.id}: {_deal_line(out, account_name=out.account_name)[2:]}"


@tool(title="Create an opportunity", read_only=False, idempotent=False)
def create_opportunity(
    ctx: ToolContext,
    account_domain: Annotated[
        str, Field(min_length=1, max_length=253, description="The account's domain, e.g. example.com.")
    ],
    name: Annotated[str, Field(max_length=200, description="The deal's name, e.g. 2027 renewal.")],
    stage: StageArgument,
    amount: AmountArgument,
    currency: CurrencyArgument,
    close_date: CloseDate,
) -> ToolResult[OpportunityOut]:
    """Create an opportunity (a deal) at an account. It counts in the revenue summary at once.
    Each call creates one: pass an idempotency_key to retry safely."""
    fields = clean_fields(
        {"name": name, "stage": stage, "amount": amount, "currency": currency, "close_date": close_date}
    )
    account = account_of(ctx, account_domain)
    now = changed_at()
    new_id = insert_opportunity(ctx.workspace_id, {"account": account.id, **fields}, now)
    deal = Opportunity.get_by_id(new_id)  # as stored (the amount to its two decimals)
    out = OpportunityOut.of(deal, account)
    ctx.record_change(f"opportunity {deal.id}", None, {"account_domain": account.domain, **_jsonable(fields)})
    ctx.changed("poggio://revenue/summary", f"poggio://accounts/{account.domain}")
    return ToolResult(out, _opportunity_text("Created", out))


def _jsonable(fields: dict) -> dict:
    return {k: str(v) if isinstance(v, (Decimal, dt.date)) else v for k, v in fields.items()}


# the deal locked, with its account read in the same statement (not locked: FOR UPDATE OF the deal).
# Advanced API: see benchmarks/README.md, "Write tools" (update_opportunity)
_LOCKED_DEAL = Prepared(
    lambda: for_update(
        Opportunity.select(Opportunity, Account)
        .join(Account)
        .where((Opportunity.workspace == slot("workspace")) & (Opportunity.id == slot("id"))),
        key=slot("id"),
    )
)


@tool(title="Update an opportunity", read_only=False, idempotent=True, destructive=True)
def update_opportunity(
    ctx: ToolContext,
    id: Annotated[int, Field(ge=1, le=MAX_ID, description="The opportunity's id, as list_opportunities shows it.")],
    stage: Annotated[str | None, Field(max_length=20, description=f"A new stage: one of {', '.join(STAGES)}.")] = None,
    amount: Annotated[Decimal | None, Field(ge=0, lt=10**12, max_digits=15, description="A new amount.")] = None,
    close_date: Annotated[dt.date | None, Field(description="A new close date, YYYY-MM-DD.")] = None,
    name: Annotated[str | None, Field(max_length=200, description="A new name.")] = None,
    if_unmodified_since: IfUnmodifiedSince = None,
) -> ToolResult[OpportunityOut]:
    """Move an opportunity to another stage, or change its amount, close date or name; fields left
    out stay as they are. The revenue summary follows at once. Overwrites what is there: pass
    if_unmodified_since (its updated_at) so a change made since is not lost."""
    given = {
        k: v
        for k, v in {"name": name, "stage": stage, "amount": amount, "close_date": close_date}.items()
        if v is not None
    }
    if not given:
        raise ToolError(None, "give at least one field to change: stage, amount, close_date, name")
    fields = clean_fields(given)
    deal = _LOCKED_DEAL.first(workspace=ctx.workspace_id, id=id)
    if deal is None:
        raise ToolError("id", f"no opportunity {id} in this workspace; list_opportunities shows their ids")
    account = deal.account
    refuse_if_modified(deal.updated_at, if_unmodified_since, "opportunity", OpportunityOut.of(deal, account))
    before = {k: getattr(deal, k) for k in fields}
    changes = {k: v for k, v in fields.items() if before[k] != v}
    if changes:
        move_opportunity(deal, {**changes, "updated_at": changed_at(deal.updated_at)})
        ctx.record_change(f"opportunity {deal.id}", _jsonable({k: before[k] for k in changes}), _jsonable(changes))
        ctx.changed("poggio://revenue/summary", f"poggio://accounts/{account.domain}")
    out = OpportunityOut.of(deal, account)
    what = ", ".join(changes) if changes else "nothing (the values were already so)"
    return ToolResult(out, _opportunity_text(f"Updated {what} of", out))


@hookimpl
def poggio_tools():
    return [get_revenue_summary, list_opportunities, create_opportunity, update_opportunity]
