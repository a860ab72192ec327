"""Recording token use without a database write per MCP call.

Calls are counted in memory per (token, day, tool) and the newest "last used" per token is kept;
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
from poggio.models import ApiToken, TokenUsage

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
        self._calls: Counter[tuple[int, dt.date, str]] = Counter()
        self._errors: Counter[tuple[int, dt.date, str]] = Counter()
        self._last: dict[int, LastUse] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0

    def record(self, token_id: int, tool: str, ok: bool = True, ip: str | None = None, client: str | None = None) -> None:
        now = utcnow()
        key = (token_id, now.date(), tool[:100])
        with self._lock:
            self._calls[key] += 1
            if not ok:
                self._errors[key] += 1
            previous = self._last.get(token_id)
            self._last[token_id] = LastUse(now, ip or (previous.ip if previous else None),
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
                rows = [
                    {"token": t, "day": d, "tool": tool, "calls": n, "errors": errors.get((t, d, tool), 0)}
                    for (t, d, tool), n in sorted(calls.items())
                ]
                for start in range(0, len(rows), 500):
                    (
                        TokenUsage.insert_many(rows[start:start + 500])
                        .on_conflict(
                            conflict_target=[TokenUsage.token, TokenUsage.day, TokenUsage.tool],
                            update={
                                TokenUsage.calls: TokenUsage.calls + EXCLUDED.calls,
                                TokenUsage.errors: TokenUsage.errors + EXCLUDED.errors,
                            },
                        )
                        .execute()
                    )
                for token_id, use in sorted(last.items()):
                    fields = {ApiToken.last_used_at: use.at}
                    if use.ip:
                        fields[ApiToken.last_used_ip] = use.ip[:45]
                    if use.client:
                        fields[ApiToken.last_used_client] = use.client[:200]
                    (
                        ApiToken.update(fields)
                        .where((ApiToken.id == token_id)
                               & (ApiToken.last_used_at.is_null() | (ApiToken.last_used_at <= use.at)))
                        .execute()
                    )
        except Exception:
            log.exception("usage flush failed; keeping %d calls for the next try", sum(calls.values()))
            with self._lock:
                self._calls.update(calls)
                self._errors.update(errors)
                for token_id, use in last.items():
                    self._last.setdefault(token_id, use)
            return 0
        self.flushes += 1
        return sum(calls.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def start(self) -> "UsageRecorder":
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
