"""What Poggio relies on of psycopg2 (``psycopg2-binary>=2.9,<3``) when it subclasses its connection and cursor.

Subclassing ``psycopg2.extensions.connection`` and ``cursor`` (``connection_factory``, ``cursor_factory``)
is psycopg2's documented way to extend them; :class:`poggio.storage.db.HoldingConnection` and
:class:`poggio.storage.db.HoldingCursor` do, and override ``execute``, ``executemany`` and ``copy_expert`` and
call ``mogrify``, each with the arguments below (as psycopg2's own signatures say them).
:func:`check` names the one a release changed.
"""

from __future__ import annotations

from psycopg2.extensions import connection, cursor

# the cursor methods HoldingCursor overrides or calls, as their signatures start
CURSOR_METHODS = {
    "execute": "execute(query, vars=None)",
    "executemany": "executemany(query, vars_list)",
    "copy_expert": "copy_expert(sql, file, size=8192)",
    "mogrify": "mogrify(query, vars=None)",
}


def check() -> None:
    """Raise ``RuntimeError`` naming what poggio.storage.db's psycopg2 subclasses rely on and psycopg2 changed."""
    problems = []
    for name, signature in CURSOR_METHODS.items():
        method = getattr(cursor, name, None)
        if not callable(method) or not (method.__doc__ or "").startswith(signature):
            problems.append(f"psycopg2 cursor.{name} is no longer {signature}")
    if "cursor_factory" not in dir(connection):
        problems.append("psycopg2 connection.cursor_factory is gone")
    if problems:
        raise RuntimeError("psycopg2 changed what poggio.storage.db relies on: " + "; ".join(problems))
