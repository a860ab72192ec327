"""Recording token use without a database write per MCP call.

Calls are counted in memory per (token or connected app, day, tool) and the newest "last used" per token is kept;
a background thread flushes both every ``interval`` seconds in one transaction (upserts that add
to what is stored, so several processes can flush side by side), and :meth:`close` flushes what is
left on a clean shutdown. A flush that fails keeps its counts for the next try.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from dataclasses import dataclass

from peewee import EXCLUDED

from poggio.db import database, utcnow, writing
from poggio.models import ApiToken, GrantUsage, OAuthGrant, TokenUsage

# What a call is counted against: an API token ("token") or an OAuth grant, a connected app ("grant").
SUBJECTS = {"token": (TokenUsage, TokenUsage.token, ApiToken), "grant": (GrantUsage, GrantUsage.grant, OAuthGrant)}

log = logging.getLogger(__name__)


@dataclass
class LastUse:
    at: dt.datetime
    ip: str | None
    client: str | None


class UsageRecorder:
    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, int, dt.date, str]] = Counter()
        self._errors: Counter[tuple[str, int, dt.date, str]] = Counter()
        self._last: dict[tuple[str, int], LastUse] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, token_id: int, tool: str, ok: bool = True, ip: str | None = None, client: str | None = None,
               kind: str = "token") -> None:
        """Count one call of an API token (``kind="token"``) or of an OAuth grant (``"grant"``)."""
        now = utcnow()
        key = (kind, token_id, now.date(), tool[:100])
        with self._lock:
            self._calls[key] += 1
            if not ok:
                self._errors[key] += 1
            previous = self._last.get((kind, token_id))
            self._last[(kind, token_id)] = LastUse(now, ip or (previous.ip if previous else None),
                                                   client or (previous.client if previous else None))

    def pending(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def flush(self) -> int:
        """Write what was counted; returns the number of calls written."""
        with self._lock:
            calls, errors, last = self._calls, self._errors, self._last
            self._calls, self._errors, self._last = Counter(), Counter(), {}
        if not calls and not last:
            return 0
        try:
            with database.connection_context(), writing():
                for kind, (usage, owner, _) in SUBJECTS.items():
                    rows = [
                        {owner.name: i, "day": d, "tool": tool, "calls": n, "errors": errors.get((k, i, d, tool), 0)}
                        for (k, i, d, tool), n in sorted(calls.items()) if k == kind
                    ]
                    for start in range(0, len(rows), 500):
                        (
                            usage.insert_many(rows[start:start + 500])
                            .on_conflict(
                                conflict_target=[owner, usage.day, usage.tool],
                                update={usage.calls: usage.calls + EXCLUDED.calls,
                                        usage.errors: usage.errors + EXCLUDED.errors},
                            )
                            .execute()
                        )
                for (kind, subject_id), use in sorted(last.items()):
                    model = SUBJECTS[kind][2]
                    fields = {model.last_used_at: use.at}
                    if use.ip:
                        fields[model.last_used_ip] = use.ip[:45]
                    if use.client:
                        fields[model.last_used_client] = use.client[:200]
                    (
                        model.update(fields)
                        .where((model.id == subject_id)
                               & (model.last_used_at.is_null() | (model.last_used_at <= use.at)))
                        .execute()
                    )
        except Exception:
            log.exception("usage flush failed; keeping %d calls for the next try", sum(calls.values()))
            with self._lock:
                self._calls.update(calls)
                self._errors.update(errors)
                for subject, use in last.items():
                    self._last.setdefault(subject, use)
            return 0
        return sum(calls.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
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
