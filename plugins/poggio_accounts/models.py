from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from peewee import CharField, DateTimeField, Field, ForeignKeyField, IntegerField, TextField

from poggio import ToolContext, ToolError, WorkspaceModel, add_search_terms, utcnow
from poggio.advanced import Prepared, bulk_insert, reserve_ids, slot

SEARCH_KIND = "account"


class Account(WorkspaceModel):
    domain = CharField(max_length=253)
    name = CharField(max_length=200)
    industry = CharField(max_length=100, default="")
    employees = IntegerField(null=True)
    country = CharField(max_length=2, default="")
    description = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(null=True)  # changed_at() of the last change; what if_unmodified_since compares

    class Meta:
        indexes = (
            (("workspace", "domain"), True),
            (("workspace", "name", "id"), False),
            (("workspace", "industry", "name", "id"), False),
        )


class Note(WorkspaceModel):
    """What someone (an agent, through ``add_note``) wrote down about an account, optionally about
    records of other packs (one of its contacts, its opportunities, ...).

    ``links``: a JSON list of ``{"kind": ..., "value": ..., "label": ...}``, one per record the note is
    about: the kind is the link argument of the pack that holds the record (``poggio_note_link``), the
    value what names the record there, the label what that pack called it for the note's writer.
    The accounts pack knows no kind: any pack can attach notes to its records."""

    account = ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    text = TextField()
    links = TextField(default="[]")
    author = CharField(max_length=254, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "created_at", "id"), False),)


# Advanced API: get_revenue_summary(account_domain) and every write tool find their account here; see
# benchmarks/README.md, "MCP throughput against the bare SDK, SQLite" (get_revenue_summary)
_BY_DOMAIN = Prepared(
    lambda: Account.select().where((Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))),
    plan_once=True,
)


def find_account(workspace_id: int, domain: str) -> Account | None:
    """The workspace's account with this domain (case-insensitive, ``www.`` and a URL's scheme ignored)."""
    return _BY_DOMAIN.first(workspace=workspace_id, domain=normalise_domain(domain))


def account_of(ctx: ToolContext, domain: str, argument: str = "account_domain") -> Account:
    """The calling workspace's account with this domain, for a tool's ``argument``. An unknown
    domain is the caller's error, naming the argument."""
    account = find_account(ctx.workspace_id, domain)
    if account is None:
        raise ToolError(argument, f"no account with domain {normalise_domain(domain)!r} in this workspace")
    return account


def account_id(ctx: ToolContext, domain: str | None, argument: str = "account_domain") -> int | None:
    """The id of :func:`account_of`; ``None`` when no domain is given."""
    return account_of(ctx, domain, argument).id if domain else None


def account_chunks(workspace_id: int, *fields: Field, size: int = 2000) -> Iterator[list[tuple[Any, ...]]]:
    """The workspace's accounts in id order, ``size`` at a time, as tuples of ``(id, *fields)``: for
    packs that add data to every account (demo data), without holding a million rows at once."""
    last_id = 0
    while True:
        chunk: list[tuple[Any, ...]] = list(
            Account.select(Account.id, *fields)  # type: ignore[arg-type]  # .tuples(): rows are tuples
            .where((Account.workspace == workspace_id) & (Account.id > last_id))
            .order_by(Account.id)
            .limit(size)
            .tuples()
        )
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1][0]


def normalise_domain(value: str) -> str:
    text = (value or "").strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0].removeprefix("www.").rstrip(".")
    return text


def insert_accounts(workspace_id: int, rows: list[dict], now) -> None:
    """Bulk-insert account dicts (no workspace key) and index their names and domains for search, in
    the caller's write transaction. Advanced API: imports and the demo write millions (benchmarks/README.md,
    "Bulk import and the demo"); create_account's one row goes later (see "Write tools")."""
    ids = reserve_ids(Account, len(rows))
    later = len(rows) == 1  # a tool's write: on PostgreSQL sent with the transaction's next statement
    columns = (
        Account.id,
        Account.workspace,
        Account.domain,
        Account.name,
        Account.industry,
        Account.employees,
        Account.country,
        Account.description,
        Account.created_at,
        Account.updated_at,
    )
    bulk_insert(
        Account,
        columns,
        [
            (
                i,
                workspace_id,
                r["domain"],
                r["name"],
                r.get("industry", ""),
                r.get("employees"),
                r.get("country", ""),
                r.get("description", ""),
                now,
                now,
            )
            for i, r in zip(ids, rows, strict=True)
        ],
        later=later,
    )
    add_search_terms(
        SEARCH_KIND, workspace_id, ((i, (r["name"], r["domain"])) for i, r in zip(ids, rows, strict=True)), later=later
    )
