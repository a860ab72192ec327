"""How a write tool runs: in one write transaction, answered once per idempotency key.

A write tool's call carries an optional ``idempotency_key``. The first call with a key stores the
key, a fingerprint of the tool and its arguments, and the answer, in the transaction of the write
itself: either both are committed or neither. A retry with the same key and the same arguments gets
the stored answer and writes nothing; the same key with other arguments (or for another tool) is
refused. Two calls with one key at the same moment: the second waits on the key's unique index (or
on SQLite's write lock) and then answers as the first did. Keys are per workspace and kept
``KEEP_HOURS`` (at least 24 h, as promised to callers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import random
from typing import TYPE_CHECKING, Annotated, Any

from peewee import IntegrityError
from pydantic import AfterValidator, Field

from poggio.runtime.results import ToolError, ToolResult
from poggio.storage.db import utcnow, writing
from poggio.storage.models import IdempotencyKey
from poggio.storage.prepared import Prepared, slot

if TYPE_CHECKING:
    from poggio.runtime.packs import ToolContext, ToolSpec

KEEP_HOURS = 48
FORGET_CHANCE = 1 / 64  # of a keyed write also deleting its workspace's old keys
IdempotencyKeyArgument = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Optional: a unique string of yours (e.g. a UUID) for this change. Retrying with the same "
        "key and the same arguments returns the first answer and changes nothing again; kept 24 hours.",
    ),
]
IDEMPOTENCY_PARAMETER = inspect.Parameter(
    "idempotency_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=IdempotencyKeyArgument
)


def fingerprint(tool: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored(result: ToolResult[Any]) -> str:
    data = None if result.data is None else result.data.model_dump(mode="json", by_alias=True)
    return json.dumps({"text": result.text, "data": data}, separators=(",", ":"))


def _replay(spec: ToolSpec, row: IdempotencyKey, wanted: str | None) -> ToolResult[Any]:
    if row.fingerprint != wanted:
        raise ToolError(
            "idempotency_key",
            f"this key was already used for another call ({row.tool} with other "
            "arguments); use a new key for a new change",
        )
    stored = json.loads(row.result)
    data = stored.get("data")
    model = spec.output_model
    return ToolResult(model.model_validate(data) if model is not None and data is not None else None, stored["text"])


_KEY = Prepared(
    lambda: IdempotencyKey.select().where(
        (IdempotencyKey.workspace == slot("workspace")) & (IdempotencyKey.key == slot("key"))
    )
)
_FORGET_KEY = Prepared(lambda: IdempotencyKey.delete().where(IdempotencyKey._meta.primary_key == slot("id")))
_NEW_KEY = Prepared.insert_into(IdempotencyKey)
_KEY_RESULT = Prepared.update_of(IdempotencyKey, ["result"])


def run_write(spec: ToolSpec, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult[Any]:
    """Run the write tool ``spec`` with ``arguments`` (``idempotency_key`` among them, or not)."""
    arguments = dict(arguments)
    key = arguments.pop("idempotency_key", None)
    wanted = None if key is None else fingerprint(spec.name, arguments)
    # A call that lost a race on a unique index (two creates of one record at once: PostgreSQL lets
    # both check, then one insert waits on the other and fails) runs once more, when the tool's own
    # check sees the winner's row and answers as it would to a later call ("already exists").
    for attempt in range(2):
        try:
            with writing():
                if key is None:
                    return spec.fn(ctx, **arguments)
                row = _KEY.first(workspace=ctx.workspace_id, key=key)
                if row is not None:
                    if row.created_at > utcnow() - dt.timedelta(hours=KEEP_HOURS):
                        return _replay(spec, row, wanted)
                    _FORGET_KEY.write(id=row.id)
                if random.random() < FORGET_CHANCE:  # now and then, the keys past their time go
                    forget_old_keys(ctx.workspace_id)
                # the key first: a concurrent call with it waits here until this one ends
                new = _NEW_KEY.write(
                    workspace=ctx.workspace_id,
                    key=key,
                    tool=spec.name,
                    fingerprint=wanted,
                    result="",
                    created_at=utcnow(),
                )
                result = spec.fn(ctx, **arguments)
                _KEY_RESULT.write_later(id=new, result=_stored(result))
                return result
        except IntegrityError:
            if attempt:
                raise ToolError(
                    None,
                    "another call wrote a conflicting record at the same moment; nothing was "
                    "changed. Read the record back and try again if it is still needed",
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def forget_old_keys(workspace_id: int, now: dt.datetime | None = None) -> int:
    """Delete the workspace's idempotency keys past ``KEEP_HOURS`` (a keyed write does it now and
    then, in its transaction)."""
    cutoff = (now or utcnow()) - dt.timedelta(hours=KEEP_HOURS)
    return (
        IdempotencyKey.delete()
        .where((IdempotencyKey.workspace == workspace_id) & (IdempotencyKey.created_at < cutoff))
        .execute()
    )


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# A moment as the tools answer it: UTC with its offset (``2026-11-25T12:00:00.123456Z``), as JSON
# Schema's "date-time" (RFC 3339) asks; the database keeps naive UTC. Clients that check structured
# content against the output schema (the MCP Inspector does) refuse a moment without an offset.
Timestamp = Annotated[dt.datetime, AfterValidator(_as_utc)]


IfUnmodifiedSince = Annotated[
    dt.datetime | None,
    Field(
        description="Optional: the record's updated_at as the read tools returned it. If the record changed since, "
        "nothing is changed and the answer is an error carrying the current record."
    ),
]


def refuse_if_modified(updated_at: dt.datetime | None, since: dt.datetime | None, what: str, current: Any) -> None:
    """For an update's ``if_unmodified_since``: refuse (a :class:`ToolError` carrying ``current``, the
    record as the read tools show it) when the record changed after ``since``."""
    if since is None or updated_at is None:
        return
    naive = since.astimezone(dt.UTC).replace(tzinfo=None) if since.tzinfo else since
    if updated_at > naive:
        raise ToolError(
            "if_unmodified_since",
            f"the {what} changed at {updated_at.isoformat()}, after "
            f"{since.isoformat()}; nothing was changed. The current record: "
            f"{current.model_dump_json()}",
        )
