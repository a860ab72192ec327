"""The activity record: every authenticated MCP request, as the MCP server wrote it (in batches, by
:class:`poggio.records.usage.UsageRecorder`), read back newest first, exported and pruned.

Every read walks one of :class:`poggio.storage.models.Activity`'s indexes from its newest end: a page of 50
costs the same at a thousand rows or ten million (``benchmarks/portal.py``). Paging is by keyset
(the ``at``/``id`` of the last row shown), never by offset, and so is the export, which streams any
number of rows in chunks of bounded size.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from peewee import Tuple

from poggio.display import cell
from poggio.errors import InvalidInput
from poggio.storage.db import database, delete_in_batches, tuple_rows, utcnow
from poggio.storage.models import Activity, ApiToken, OAuthClient, OAuthGrant, Workspace

# MCP methods counted under their own name (every other method is "other"; an unknown tool
# "tools/call:unknown"): the names a record's ``tool`` takes besides the installed tools
METHOD_LABELS = ("initialize", "ping", "tools/list", "server/discover", "other", "tools/call:unknown")
OUTCOMES = ("ok", "tool_error", "refused", "rate_limited", "timed_out")
KINDS = ("token", "grant")
FORMATS = ("jsonl", "csv")
PAGE_SIZE = 50
LAST_DAY = dt.date(9998, 12, 31)  # a later "until" is the same, and one day more would overflow
EXPORT_CHUNK = 2000
COLUMNS = ("at", "kind", "subject_id", "subject", "tool", "outcome", "latency_ms", "client", "ip")


@dataclass(frozen=True)
class Filters:
    """What an admin narrows the record to. Dates are whole UTC days, ``until`` included."""

    kind: str | None = None
    subject_id: int | None = None
    tool: str | None = None
    outcome: str | None = None
    since: dt.date | dt.datetime | None = None
    until: dt.date | None = None

    @classmethod
    def parse(cls, *, kind=None, subject_id=None, tool=None, outcome=None, since=None, until=None) -> Filters:
        """From form or command-line text; every bad value is an :class:`InvalidInput` naming it."""
        tool = (tool or "").strip()[:100] or None
        outcome = (outcome or "").strip() or None
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidInput("outcome", f"one of {', '.join(OUTCOMES)}")
        if kind is not None and kind not in KINDS:
            raise InvalidInput("kind", f"one of {', '.join(KINDS)}")
        return cls(
            kind=kind,
            subject_id=subject_id,
            tool=tool,
            outcome=outcome,
            since=_moment(since, "since"),
            until=_day(until, "until"),
        )

    def where(self, workspace_id: int):
        cond = Activity.workspace == workspace_id
        if self.kind is not None:
            cond &= (Activity.kind == self.kind) & (Activity.subject_id == self.subject_id)
        if self.tool:
            cond &= Activity.tool == self.tool
        if self.outcome:
            cond &= Activity.outcome == self.outcome
        if self.since is not None:
            start = self.since if isinstance(self.since, dt.datetime) else dt.datetime.combine(self.since, dt.time())
            cond &= Activity.at >= start
        if self.until is not None:
            cond &= Activity.at < dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time())
        return cond


def _day(value, name: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        day = dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(name, "a date as YYYY-MM-DD") from None
    return min(day, LAST_DAY)


def _moment(value, name: str) -> dt.date | dt.datetime | None:
    """A day (YYYY-MM-DD), a moment (ISO 8601; an offset is turned into UTC) or a span back from now (24h, 7d)."""
    if value in (None, "") or isinstance(value, (dt.date, dt.datetime)):
        return value or None
    text = str(value).strip()
    if text[:-1].isdigit() and text[-1:] in ("h", "d"):
        amount = int(text[:-1])
        if amount > 36500:
            raise InvalidInput(name, "a span of at most 36500 days")
        return utcnow() - (dt.timedelta(hours=amount) if text.endswith("h") else dt.timedelta(days=amount))
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise InvalidInput(name, "a date (YYYY-MM-DD), a time (ISO 8601) or a span back from now (24h, 7d)") from None
    return moment


def encode_cursor(row: Activity) -> str:
    return f"{row.at.isoformat()}~{row.id}"


def decode_cursor(text: str | None) -> tuple[dt.datetime, int] | None:
    if not text:
        return None
    at, sep, ident = text.partition("~")
    try:
        if not sep or not ident.isdigit() or len(ident) > 18:
            raise ValueError
        return dt.datetime.fromisoformat(at), int(ident)
    except ValueError:
        raise InvalidInput("cursor", "not a cursor of this list; start from the first page") from None


def _newest_first(workspace_id: int, filters: Filters, after: tuple[dt.datetime, int] | None, limit: int, columns=()):
    query = Activity.select(*columns).where(filters.where(workspace_id))
    if after is not None:
        query = query.where(Tuple(Activity.at, Activity.id) < Tuple(*after))
    return query.order_by(Activity.at.desc(), Activity.id.desc()).limit(limit)


def page(
    workspace: Workspace | int, filters: Filters, cursor: str | None = None, limit: int = PAGE_SIZE
) -> tuple[list[Activity], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    workspace_id = workspace if isinstance(workspace, int) else workspace.id
    rows = list(_newest_first(workspace_id, filters, decode_cursor(cursor), limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def subject_names(workspace_id: int) -> dict[tuple[str, int], str]:
    """(kind, id) -> a name an admin recognises, for every token and connected app of the workspace."""
    names = {
        ("token", i): n
        for i, n in tuple_rows(ApiToken.select(ApiToken.id, ApiToken.name).where(ApiToken.workspace == workspace_id))
    }
    grants = tuple_rows(
        OAuthGrant.select(OAuthGrant.id, OAuthClient.name).join(OAuthClient).where(OAuthGrant.workspace == workspace_id)
    )
    names.update({("grant", i): n for i, n in grants})
    return names


def iterate(workspace_id: int, filters: Filters, chunk: int = EXPORT_CHUNK) -> Iterator:
    """Every matching row, newest first, read ``chunk`` rows at a time (bounded memory at any size);
    each chunk is its own short read, so an export holds no transaction open."""
    after = None
    while True:
        with database.connection_context():  # plain tuples: a model object per row cost most of the time
            rows = list(_newest_first(workspace_id, filters, after, chunk, EXPORT_FIELDS).namedtuples())
        yield from rows
        if len(rows) < chunk:
            return
        after = (rows[-1].at, rows[-1].id)


EXPORT_FIELDS = (
    Activity.id,
    Activity.at,
    Activity.kind,
    Activity.subject_id,
    Activity.tool,
    Activity.outcome,
    Activity.latency_ms,
    Activity.client,
    Activity.ip,
)


def as_dict(row, names: dict[tuple[str, int], str]) -> dict:
    return {
        "at": row.at.isoformat(timespec="milliseconds") + "Z",
        "kind": row.kind,
        "subject_id": row.subject_id,
        "subject": names.get((row.kind, row.subject_id), ""),
        "tool": row.tool,
        "outcome": row.outcome,
        "latency_ms": round(row.latency_ms, 2),
        "client": row.client or "",
        "ip": row.ip or "",
    }


def export(workspace_id: int, filters: Filters, fmt: str = "jsonl") -> Iterator[str]:
    """The record as JSON Lines or CSV (with a header row), one chunk of text per row."""
    if fmt not in FORMATS:
        raise InvalidInput("format", f"one of {', '.join(FORMATS)}")
    with database.connection_context():
        names = subject_names(workspace_id)
    if fmt == "jsonl":
        for row in iterate(workspace_id, filters):
            yield json.dumps(as_dict(row, names), separators=(",", ":")) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in iterate(workspace_id, filters):
        record = as_dict(row, names)
        # no control character for a terminal, no formula for a spreadsheet (poggio.display)
        for key in ("subject", "client", "tool", "ip"):
            record[key] = cell(record[key])
        writer.writerow(record)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def prune(retention_days: int, now: dt.datetime | None = None, batch: int = 5000) -> int:
    """Delete what is older than ``retention_days``, workspace by workspace and ``batch`` rows per
    statement over the (workspace, at) index: short write locks, no scan. Returns the rows deleted."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return sum(
        delete_in_batches(Activity, (Activity.workspace == workspace_id) & (Activity.at < cutoff), batch)
        for (workspace_id,) in tuple_rows(Workspace.select(Workspace.id))
    )
