"""Errors the core raises for bad input; each names the field it is about, for inline messages. And
the database's own refusals that a caller can act on, in words (:func:`database_trouble`)."""


class PoggioError(Exception):
    """Base of the errors the core raises on purpose."""


class InvalidInput(PoggioError):
    """A value a person or program gave is not acceptable. ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(PoggioError):
    """The thing asked for does not exist in this workspace."""


# What a tool call is told; the portal words its pages itself
TOOL_MESSAGES = {
    "busy": "The database is busy with other writes; try again shortly (with the same idempotency_key, a "
    "retry cannot apply a change twice).",
    "full": "The database server is out of disk space; nothing was changed. A Poggio administrator must free "
    "or add space.",
}
# SQLite's result codes (sqlite3 exceptions carry them) and PostgreSQL's SQLSTATEs (psycopg2's pgcode)
_SQLITE = {5: "busy", 6: "busy", 13: "full"}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL
_SQLITE_TEXT = {"database is locked": "busy", "database table is locked": "busy", "database or disk is full": "full"}
_POSTGRES = {"53100": "full", "55P03": "busy"}  # disk_full, lock_not_available
_POSTGRES_CLASSES = {"DiskFull": "full", "LockNotAvailable": "busy"}  # psycopg2.errors' names for them


def database_trouble(exc: BaseException) -> str | None:
    """``"busy"`` when ``exc`` (or what it wraps: peewee re-raises the driver's errors) is the
    database busy with other writes, ``"full"`` when it is out of disk space; None for anything else."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE:
            return _SQLITE[code & 0xFF]
        if (pgcode := getattr(current, "pgcode", None)) in _POSTGRES:
            return _POSTGRES[pgcode]
        if type(current).__module__.startswith("psycopg2") and type(current).__name__ in _POSTGRES_CLASSES:
            return _POSTGRES_CLASSES[type(current).__name__]
        text = str(current).strip().lower()
        if type(current).__name__ == "OperationalError" and text in _SQLITE_TEXT:
            return _SQLITE_TEXT[text]
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException)),
            ]
        )
    return None
