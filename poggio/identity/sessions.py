"""Portal sign-in sessions, kept in the database so they can be ended on the server.

The browser's signed cookie carries a random session id; the database keeps only its SHA-256
digest (as it does for API tokens), with when the session began and when it was last seen. A
session ends when its user signs out, changes password or is removed or deactivated, after
``session_idle_hours`` without a request, and ``session_max_days`` after it began, whichever comes
first. Ending it deletes the row: a copy of the cookie made before opens nothing after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField

from poggio.storage.db import BaseModel, utcnow
from poggio.storage.models import User

SEEN_EVERY = dt.timedelta(minutes=1)  # last_seen_at is written at most this often per session


class UserSession(BaseModel):
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    user_id: ForeignKeyField[int]
    digest = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow, index=True)
    ip = CharField(max_length=45, null=True)


class SignInThrottle(BaseModel):
    """Failed sign-ins per key (an account and client pair, or a client), for every portal process."""

    key = CharField(max_length=320, unique=True)
    failures = IntegerField(default=0)
    last_failed_at = DateTimeField(index=True)
    blocked_until = DateTimeField(null=True)


def lifetimes(settings) -> tuple[dt.timedelta, dt.timedelta]:
    """(idle, absolute) lifetimes of a session under ``settings``."""
    return dt.timedelta(hours=settings.session_idle_hours), dt.timedelta(days=settings.session_max_days)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(user: User, ip: str | None = None) -> str:
    """A new session of ``user``; returns the id the cookie carries (never stored as such)."""
    session_id = secrets.token_urlsafe(32)
    UserSession.create(user=user, digest=_digest(session_id), ip=(ip or None) and ip[:45])
    return session_id


def alive(
    session_id: str | None, user_id: int, idle: dt.timedelta, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> bool:
    """Whether ``session_id`` is a live session of user ``user_id``; notes that it was seen."""
    if not session_id or not isinstance(session_id, str):
        return False
    now = now or utcnow()
    row = UserSession.get_or_none(UserSession.digest == _digest(session_id))
    if row is None or row.user_id != user_id:
        return False
    if now - row.last_seen_at > idle or now - row.created_at > lifetime:
        row.delete_instance()
        return False
    if now - row.last_seen_at >= SEEN_EVERY:
        UserSession.update(last_seen_at=now).where(UserSession.id == row.id).execute()
    return True


def end(session_id: str | None) -> None:
    if session_id and isinstance(session_id, str):
        UserSession.delete().where(UserSession.digest == _digest(session_id)).execute()


def end_all(user: User | int) -> int:
    """End every session of ``user`` (sign-out everywhere); returns how many there were."""
    return UserSession.delete().where(UserSession.user == user).execute()


def purge(idle: dt.timedelta, lifetime: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Delete sessions that can no longer be used."""
    now = now or utcnow()
    return (
        UserSession.delete()
        .where((UserSession.last_seen_at < now - idle) | (UserSession.created_at < now - lifetime))
        .execute()
    )
