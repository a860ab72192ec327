from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from peewee import CharField, DateField, DateTimeField, DecimalField, ForeignKeyField, IntegerField

from poggio import WorkspaceModel, utcnow
from poggio.advanced import Prepared, bulk_insert, slot
from poggio_accounts import Account

STAGES = ("prospecting", "qualification", "proposal", "negotiation", "won", "lost")
OPEN_STAGES = STAGES[:4]


class Opportunity(WorkspaceModel):
    """A deal. Written only through :func:`insert_opportunities`, which keeps :class:`RevenueDay`."""

    account_id: ForeignKeyField[int]  # for the type checker: the raw id peewee adds (a row's int)
    account = ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    name = CharField(max_length=200)
    stage = CharField(max_length=20)
    amount = DecimalField(max_digits=14, decimal_places=2)
    currency = CharField(max_length=3)
    close_date = DateField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(null=True)  # changed_at() of the last change; what if_unmodified_since compares

    class Meta:
        indexes = (
            (("workspace", "close_date", "id"), False),
            (("account", "close_date", "id"), False),
            (("workspace", "stage", "close_date"), False),
            (("workspace", "name"), False),  # completing names (migration 0004)
        )


class RevenueDay(WorkspaceModel):
    """Count and amount of the workspace's opportunities per currency, stage and close date: what the
    workspace-wide revenue summary adds up (a few thousand rows, however many opportunities)."""

    currency = CharField(max_length=3)
    stage = CharField(max_length=20)
    close_date = DateField()
    count = IntegerField()
    amount = DecimalField(max_digits=18, decimal_places=2)

    class Meta:
        indexes = ((("workspace", "currency", "stage", "close_date"), True),)


def insert_opportunities(workspace_id: int, rows: list[dict], now) -> None:
    """Insert opportunity dicts (no workspace key) and add them to the day totals, in the caller's
    transaction: the one way opportunities are written, so the totals always match them."""
    columns = (
        Opportunity.workspace,
        Opportunity.account,
        Opportunity.name,
        Opportunity.stage,
        Opportunity.amount,
        Opportunity.currency,
        Opportunity.close_date,
        Opportunity.created_at,
        Opportunity.updated_at,
    )
    bulk_insert(
        Opportunity,
        columns,
        [
            (
                workspace_id,
                r["account"],
                r["name"],
                r["stage"],
                r["amount"],
                r["currency"],
                r["close_date"],
                now,
                r.get("updated_at", now),
            )
            for r in rows
        ],
    )
    days: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for r in rows:
        total = days[(r["currency"], r["stage"], r["close_date"])]
        total[0] += 1
        total[1] += Decimal(r["amount"])
    add_to_days(workspace_id, days)


def insert_opportunity(workspace_id: int, row: dict, now) -> int:
    """Insert one opportunity dict and add it to the day totals, in the caller's transaction: its id."""
    # a plain peewee insert: create_opportunity is not one of the benchmarked tools
    new_id = Opportunity.insert({"updated_at": now, **row, "workspace": workspace_id, "created_at": now}).execute()
    add_to_days(workspace_id, {(row["currency"], row["stage"], row["close_date"]): [1, Decimal(row["amount"])]})
    return new_id


def move_opportunity(opportunity: Opportunity, changes: dict) -> None:
    """Change an opportunity (a row read with ``for_update``) and move it in the day totals, in the
    caller's transaction: out of its old (currency, stage, close date) with its old amount, into the
    new ones with the new amount."""
    old = (opportunity.currency, opportunity.stage, opportunity.close_date)
    old_amount = Decimal(opportunity.amount)
    for field, value in changes.items():
        setattr(opportunity, field, value)
    # Advanced API (compiled once, sent with the next statement) here and in add_to_days: see
    # benchmarks/README.md, "Write tools" (update_opportunity; tests/test_round_trips.py holds 2 round trips)
    Prepared.update_of(Opportunity, changes).write_later(
        id=opportunity.id, **{f: getattr(opportunity, f) for f in changes}
    )
    new = (opportunity.currency, opportunity.stage, opportunity.close_date)
    new_amount = Decimal(opportunity.amount)
    if (old, old_amount) == (new, new_amount):
        return
    days: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    days[old][0] -= 1
    days[old][1] -= old_amount
    days[new][0] += 1
    days[new][1] += new_amount
    add_to_days(opportunity.workspace_id, days)


_DAY_COLUMNS = (
    RevenueDay.workspace,
    RevenueDay.currency,
    RevenueDay.stage,
    RevenueDay.close_date,
    RevenueDay.count,
    RevenueDay.amount,
)
_DAY_UPSERT = (
    'ON CONFLICT ("workspace_id", "currency", "stage", "close_date") DO UPDATE SET '
    '"count" = "revenue_day"."count" + excluded."count", '
    '"amount" = "revenue_day"."amount" + excluded."amount"'
)


def add_to_days(workspace_id: int, days: dict[tuple, list]) -> None:
    """Add ``{(currency, stage, close_date): [count, amount]}`` (negative to take away) to the day
    totals; a day whose count falls to 0 goes."""
    # in one order everywhere: two writes moving deals between the same days lock them alike (no deadlock)
    keys = sorted(k for k, (count, amount) in days.items() if count or amount)
    # one upsert compiled once for all the days (an import or the demo adds thousands per chunk)
    bulk_insert(
        RevenueDay,
        _DAY_COLUMNS,
        ((workspace_id, currency, stage, day, *days[(currency, stage, day)]) for currency, stage, day in keys),
        on_conflict=_DAY_UPSERT,
        later=len(keys) <= 4,
    )  # a tool's write: sent with the next statement
    for currency, stage, day in (k for k, (count, _) in days.items() if count < 0):
        _EMPTIED_DAY.write_later(workspace=workspace_id, currency=currency, stage=stage, close_date=day)


_EMPTIED_DAY = Prepared(
    lambda: RevenueDay.delete().where(
        (RevenueDay.workspace == slot("workspace"))
        & (RevenueDay.currency == slot("currency"))
        & (RevenueDay.stage == slot("stage"))
        & (RevenueDay.close_date == slot("close_date", RevenueDay.close_date))
        & (RevenueDay.count <= 0)
    )
)
