"""Sign-in throttling, counted in the database so that every portal worker and host shares it, and
atomically: an attempt is counted *before* its password is checked, in one transaction with the check
of the wait, so a burst of concurrent guesses gets no more tries than a sequence of them.

Two counters are kept: per account and client (``pair:``) and per client (``client:``). Each allows a
few failures, then makes its key wait, twice as long after every further failure (backing off, up to
MAX_WAIT), never a lock. A stranger's failures slow only the stranger: an account's owner signing in
from a client that has not failed is never blocked. Counters are forgotten an hour after their last
failure, and a successful sign-in clears the pair's.
"""

from __future__ import annotations

import datetime as dt

from peewee import SqliteDatabase

from poggio.identity.sessions import SignInThrottle
from poggio.storage.db import database, utcnow, writing

FREE = {"pair": 5, "client": 20}  # failures a key may have before it waits
FIRST_WAIT = dt.timedelta(seconds=15)
MAX_WAIT = dt.timedelta(minutes=15)
FORGET_AFTER = dt.timedelta(hours=1)


def wait_after(failures: int, free: int) -> dt.timedelta | None:
    """How long a key waits once it has ``failures``: nothing within its free ones, then
    FIRST_WAIT doubling with each further failure, at most MAX_WAIT."""
    if failures < free:
        return None
    return min(MAX_WAIT, FIRST_WAIT * 2 ** min(failures - free, 20))


class Throttle:
    def _keys(self, email: str, ip: str) -> dict[str, int]:
        email, ip = email.strip().lower()[:254], (ip or "-")[:45]
        return {f"pair:{ip}|{email}": FREE["pair"], f"client:{ip}": FREE["client"]}

    def attempt(self, email: str, ip: str, now: dt.datetime | None = None) -> int | None:
        """Count a sign-in attempt as a failure unless ``succeeded`` follows; returns the seconds to
        wait instead if the client must wait (then nothing is counted)."""
        now = now or utcnow()
        keys = self._keys(email, ip)
        with writing():  # SQLite: BEGIN IMMEDIATE, one writer at a time; PostgreSQL: the rows are locked
            rows = []
            for key in keys:
                SignInThrottle.insert(key=key, failures=0, last_failed_at=now).on_conflict_ignore().execute()
                query = SignInThrottle.select().where(SignInThrottle.key == key)
                if not isinstance(database.obj, SqliteDatabase):
                    query = query.for_update()
                rows.append(query.get())
            waits = [r.blocked_until - now for r in rows if r.blocked_until and r.blocked_until > now]
            if waits:
                return max(1, int(max(waits).total_seconds() + 0.999))
            for row in rows:
                if now - row.last_failed_at > FORGET_AFTER:
                    row.failures = 0
                row.failures += 1
                row.last_failed_at = now
                wait = wait_after(row.failures, keys[row.key])
                row.blocked_until = now + wait if wait else None
                row.save()
            SignInThrottle.delete().where(
                (SignInThrottle.last_failed_at < now - FORGET_AFTER)
                & (SignInThrottle.blocked_until.is_null() | (SignInThrottle.blocked_until < now))
            ).execute()
        return None

    def succeeded(self, email: str, ip: str) -> None:
        """The attempt counted by ``attempt`` was the right password: forget the pair's failures and
        take that attempt back from the client's count."""
        pair, client = self._keys(email, ip)
        with writing():
            SignInThrottle.delete().where(SignInThrottle.key == pair).execute()
            row = SignInThrottle.get_or_none(SignInThrottle.key == client)
            if row is not None:
                row.failures = max(0, row.failures - 1)
                row.blocked_until = None if wait_after(row.failures, FREE["client"]) is None else row.blocked_until
                row.save()
