"""Recording token use without a database write per MCP call.

:meth:`UsageRecorder.record` is the one hook every request path of the MCP server calls, once per
authenticated request (refusals included): it adds the call to the per-day counters and, in the same
flush and transaction, appends its row to the activity record (:mod:`poggio.records.activity`), so the two
always add up. Calls are counted in memory per (token or connected app, day, tool) and the newest
"last used" per token is kept;
a background thread flushes both every ``interval`` seconds in one transaction (upserts that add
to what is stored, so several processes can flush side by side), and :meth:`close` flushes what is
left on a clean shutdown. A flush that fails keeps its counts for the next try.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import EXCLUDED, Field, ForeignKeyField

from poggio.records import activity
from poggio.storage import bulk
from poggio.storage.db import database, writing
from poggio.storage.models import Activity, ApiToken, GrantUsage, OAuthGrant, TokenUsage

ACTIVITY_FIELDS = (
    Activity.workspace,
    Activity.kind,
    Activity.subject_id,
    Activity.at,
    Activity.tool,
    Activity.outcome,
    Activity.latency_ms,
    Activity.client,
    Activity.ip,
)
# What a call is counted against: an API token ("token") or an OAuth grant, a connected app ("grant").
SUBJECTS: dict[str, tuple[type[TokenUsage | GrantUsage], ForeignKeyField[Any], type[ApiToken | OAuthGrant]]] = {
    "token": (TokenUsage, TokenUsage.token, ApiToken),
    "grant": (GrantUsage, GrantUsage.grant, OAuthGrant),
}

log = logging.getLogger(__name__)


@dataclass
class LastUse:
    at: dt.datetime
    ip: str | None
    client: str | None


# Activity rows kept in memory at most while the database cannot be written (then the oldest go, and
# the log says so); the counters are kept whatever happens.
MAX_PENDING_ACTIVITY = 200_000
PRUNE_EVERY = 3600.0  # seconds between prunes of the activity record (and the other chores)


class UsageRecorder:
    def __init__(
        self,
        interval: float = 2.0,
        retention_days: int | None = None,
        chores: Sequence[tuple[str, Callable[[], int]]] = (),
    ):
        self.interval = interval
        self.retention_days = retention_days  # None: the activity record is not pruned by this recorder
        # other deletions the flush thread runs with the prune: (what it deletes, a function returning how many)
        self.chores = tuple(chores)
        self._activity: list[tuple] = []
        self._next_prune = 0.0
        self.pruned = 0
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, int, dt.date, str]] = Counter()
        self._errors: Counter[tuple[str, int, dt.date, str]] = Counter()
        self._last: dict[tuple[str, int], LastUse] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        token_id: int,
        tool: str,
        ok: bool = True,
        ip: str | None = None,
        client: str | None = None,
        kind: str = "token",
        *,
        workspace_id: int | None = None,
        outcome: str | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        """Count one call of an API token (``kind="token"``) or of an OAuth grant (``"grant"``), and,
        given its ``workspace_id``, put it on the activity record with its ``outcome`` (one of
        :data:`poggio.records.activity.OUTCOMES`; by default ``ok`` or ``tool_error`` after ``ok``)."""
        moment = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        now = moment.replace(microsecond=0)
        key = (kind, token_id, now.date(), tool[:100])
        if outcome is not None:
            ok = outcome == "ok"
        with self._lock:
            if workspace_id is not None:
                self._activity.append(
                    (
                        workspace_id,
                        kind,
                        token_id,
                        moment,
                        tool[:100],
                        outcome or ("ok" if ok else "tool_error"),
                        round(latency_ms, 3),
                        client[:200] if client else None,
                        ip[:45] if ip else None,
                    )
                )
            self._calls[key] += 1
            if not ok:
                self._errors[key] += 1
            previous = self._last.get((kind, token_id))
            self._last[(kind, token_id)] = LastUse(
                now, ip or (previous.ip if previous else None), client or (previous.client if previous else None)
            )

    def pending(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def pending_activity(self) -> int:
        with self._lock:
            return len(self._activity)

    def flush(self) -> int:
        """Write what was counted; returns the number of calls written."""
        with self._lock:
            calls, errors, last, records = self._calls, self._errors, self._last, self._activity
            self._calls, self._errors, self._last, self._activity = Counter(), Counter(), {}, []
        if not calls and not last and not records:
            return 0
        try:
            with database.connection_context(), writing():
                # one compiled INSERT over plain tuples: peewee's insert_many built the SQL of every
                # row anew, in this thread but holding the interpreter's lock the requests need
                bulk.insert_rows(Activity, ACTIVITY_FIELDS, records)
                for kind, (usage, owner, _) in SUBJECTS.items():
                    rows = [
                        {owner.name: i, "day": d, "tool": tool, "calls": n, "errors": errors.get((k, i, d, tool), 0)}
                        for (k, i, d, tool), n in sorted(calls.items())
                        if k == kind
                    ]
                    for start in range(0, len(rows), 500):
                        (
                            usage.insert_many(rows[start : start + 500])
                            .on_conflict(
                                conflict_target=[owner, usage.day, usage.tool],
                                update={
                                    usage.calls: usage.calls + EXCLUDED.calls,
                                    usage.errors: usage.errors + EXCLUDED.errors,
                                },
                            )
                            .execute()
                        )
                for (kind, subject_id), use in sorted(last.items()):
                    model = SUBJECTS[kind][2]
                    fields: dict[Field, object] = {model.last_used_at: use.at}
                    if use.ip:
                        fields[model.last_used_ip] = use.ip[:45]
                    if use.client:
                        fields[model.last_used_client] = use.client[:200]
                    (
                        model.update(fields)
                        .where(
                            (model.id == subject_id) & (model.last_used_at.is_null() | (model.last_used_at <= use.at))
                        )
                        .execute()
                    )
        except Exception:
            log.exception("usage flush failed; keeping %d calls for the next try", sum(calls.values()))
            with self._lock:
                self._calls.update(calls)
                self._errors.update(errors)
                self._activity[:0] = records
                if len(self._activity) > MAX_PENDING_ACTIVITY:
                    dropped = len(self._activity) - MAX_PENDING_ACTIVITY
                    del self._activity[:dropped]
                    log.error("activity record: %d rows dropped, the database could not be written", dropped)
                for subject, use in last.items():
                    self._last.setdefault(subject, use)
            return 0
        return sum(calls.values()) or len(records)

    def prune(self) -> int:
        """Delete activity older than the retention, then run the other chores; done by the flush
        thread every hour. A chore that fails is logged and tried again an hour later."""
        work = list(self.chores)
        if (days := self.retention_days) is not None:
            work.insert(0, (f"activity rows older than {days} days", lambda: activity.prune(days)))
        total = 0
        for what, chore in work:
            try:
                with database.connection_context():
                    count = chore()
            except Exception:
                log.exception("pruning %s failed; trying again later", what)
                continue
            total += count
            if count:
                log.info("pruned %d %s", count, what)
        self.pruned += total
        return total

    def _run(self) -> None:
        while True:
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY
                self.prune()
            if self._stop.wait(self.interval):
                return
            self.flush()

    def start(self) -> UsageRecorder:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="poggio-usage-flush", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
