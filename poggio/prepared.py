"""Queries compiled to SQL once and run many times with new values.

Peewee builds a query's SQL anew on every execution, and for the look-ups a tool makes per call that
costs far more than the database does: compiling a select of an account by domain takes many times
longer than SQLite takes to answer it (benchmarks/README.md has the figures). A :class:`Prepared`
query is built and compiled once per kind of database; each run binds fresh values to its
:func:`slot` placeholders and reads rows exactly as the peewee query would (models, tuples or dicts, with the fields' conversions).

    by_domain = Prepared(lambda: Account.select().where(
        (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))))
    account = by_domain.first(workspace=ctx.workspace_id, domain="example.com")

Only values become slots; anything that changes the SQL's shape (which filters apply, the length of
an ``IN`` list) needs a Prepared query of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peewee import Field, Value

from poggio.db import database


class Slot:
    """A named placeholder in a prepared query; ``field`` converts the value the way comparing with
    that field would (dates, decimals, foreign keys)."""

    __slots__ = ("name", "field")

    def __init__(self, name: str, field: Field | None = None):
        self.name = name
        self.field = field


def slot(name: str, field: Field | None = None) -> Value:
    """A value to bind at each run of a :class:`Prepared` query, passed as ``name=...``."""
    return Value(Slot(name, field), converter=False)  # converter=False: the slot reaches the params as is


class Prepared:
    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._compiled: dict[type, tuple[Any, str, list[Any]]] = {}

    def _compile(self) -> tuple[Any, str, list[Any]]:
        kind = type(database.obj)  # the dialect: quoting and placeholder style
        compiled = self._compiled.get(kind)
        if compiled is None:
            query = self._build()
            sql, params = query.sql()
            compiled = self._compiled[kind] = (query, sql, params)
        return compiled

    def run(self, **values: Any):
        """Execute with ``values`` for the slots; an iterable of rows as the query would give them."""
        query, sql, params = self._compile()
        bound = []
        for p in params:
            if isinstance(p, Slot):
                value = values[p.name]
                bound.append(p.field.db_value(value) if p.field is not None and value is not None else value)
            else:
                bound.append(p)
        # peewee's private row reader: tests/test_prepared.py::test_peewee_private_row_reader_is_there
        return query._get_cursor_wrapper(database.execute_sql(sql, bound))

    def all(self, **values: Any) -> list[Any]:
        return list(self.run(**values))

    def first(self, **values: Any) -> Any | None:
        for row in self.run(**values):
            return row
        return None
