"""Queries compiled to SQL once and run many times with new values.

Peewee builds a query's SQL anew on every execution, and for the look-ups a tool makes per call that
costs far more than the database does: compiling a select of an account by domain takes many times
longer than SQLite takes to answer it (benchmarks/README.md has the figures). A :class:`Prepared`
query is built and compiled once per kind of database; each run binds fresh values to its
:func:`slot` placeholders and reads rows exactly as the peewee query would (models, tuples or dicts,
with the fields' conversions).

    by_domain = Prepared(lambda: Account.select().where(
        (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))))
    account = by_domain.first(workspace=ctx.workspace_id, domain="example.com")

Only values become slots; anything that changes the SQL's shape (which filters apply, the length of
an ``IN`` list) needs a Prepared query of its own.

``Prepared(..., plan_once=True)`` goes one step further on PostgreSQL: the statement is prepared on the
server (``PREPARE``) once per connection and run with ``EXECUTE``, so PostgreSQL parses and plans it
once instead of at every run, which is most of its work for a look-up by key. Only for queries whose
best plan does not depend on the values (equality on keys): a prepared statement may settle on one
generic plan, which a search over skewed data must not. :func:`execute` does the same for SQL
written by hand.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    Field,
    FieldAlias,
    ForeignKeyField,
    Insert,
    IntegerField,
    Model,
    ModelObjectCursorWrapper,
    ModelTupleCursorWrapper,
    SqliteDatabase,
    TextField,
    Value,
)

from poggio.adapters.peewee import cursor_reader, loaded
from poggio.storage.db import database, write_later


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


# what peewee's CursorWrapper sets per cursor; everything else its initialize() derives from the
# query and the result's columns, the same at every run of one compiled query
_PER_CURSOR = frozenset({"cursor", "count", "index", "initialized", "populated", "row_cache"})


def _kept(field: Field | None) -> type | None:
    """The type of value ``field`` gives back unchanged (an int of an integer field, a str of a text
    field): the driver's value of that type needs no conversion. None: always convert."""
    while isinstance(field, (ForeignKeyField, FieldAlias)):  # a key: its target's; an alias: its field's
        field = field.rel_field if isinstance(field, ForeignKeyField) else field.field
    if type(field) in (AutoField, IntegerField, BigIntegerField):
        return int
    if type(field) in (CharField, TextField):
        return str
    return None


def _fast(field: Field | None, converter):
    """``converter`` (the field's ``python_value``), or a quicker one that gives the same values: a
    datetime text read by ``datetime.fromisoformat`` directly (what peewee does after a few checks
    and calls), anything else by the field."""
    if type(field) is not DateTimeField or converter is None:
        return converter

    def read(value):
        if type(value) is str:
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
        return converter(value)

    return read


def _row_reader(columns: list[tuple[Any, type | None]], shape: str, keys: list[tuple[str, bool]] | None = None):
    """A function of one row (a tuple of ``len(columns)`` values) that converts each value as
    ``columns`` say, ``(converter, kept)``: as is if the converter is None or the value is of the kept
    type, else through the converter. ``shape`` "tuple" gives a tuple; "dicts" gives ``(data, extra)``,
    each value under its ``keys`` entry, ``(name, is_field)``: a field's name into data, another
    column's name into extra. Written out as Python source and compiled once, as
    ``collections.namedtuple`` writes its class: a loop over the columns cost more than the rest of
    reading a row."""
    names = {}
    values = []
    for i, (converter, kept) in enumerate(columns):
        if converter is None:
            values.append(f"v{i}")
        elif kept is None:
            names[f"c{i}"] = converter
            values.append(f"c{i}(v{i})")
        else:
            names[f"c{i}"], names[f"k{i}"] = converter, kept
            values.append(f"(v{i} if type(v{i}) is k{i} else c{i}(v{i}))")
    unpack = "".join(f"v{i}, " for i in range(len(columns)))
    if shape == "tuple":
        body = f"return ({''.join(v + ', ' for v in values)})"
    else:
        assert keys is not None, "a dicts reader names its columns"
        data = ", ".join(f"{k[0]!r}: {v}" for k, v in zip(keys, values, strict=True) if k[1])
        extra = ", ".join(f"{k[0]!r}: {v}" for k, v in zip(keys, values, strict=True) if not k[1])
        body = f"return {{{data}}}, {{{extra}}}"
    source = f"def read(row):\n    {unpack}= row\n    {body}\n"
    exec(compile(source, f"<poggio.storage.prepared row reader {shape}>", "exec"), names)  # noqa: S102 (our source)
    return names["read"]


class FlatModelReader:
    """Rows of a one-model query read as model objects (``query.objects()``), as peewee's
    ``ModelObjectCursorWrapper`` reads them (every column through its field's conversion, the
    fields into the object's data, other columns as plain attributes, nothing dirty) without
    setting each value through the field descriptors, which cost more than the rest of reading a
    row. Built from the wrapper peewee initialised for the query."""

    def __init__(self, reader: ModelObjectCursorWrapper):
        self.model = reader.constructor
        meta = self.model._meta
        columns, keys = [], []
        for name, converter, node in zip(reader.unique_columns, reader.converters, reader.fields, strict=True):
            field = meta.fields.get(name) or meta.columns.get(name)
            columns.append((_fast(field, converter), _kept(field or node)))  # node: what an extra column reads
            keys.append((field.name, True) if field is not None else (name, False))
        self.row = _row_reader(columns, "dicts", keys)

    @staticmethod
    def fits(reader) -> bool:
        return type(reader) is ModelObjectCursorWrapper and reader.is_model

    def read(self, rows: list[tuple]) -> list[Any]:
        model, row_of = self.model, self.row
        out = []
        for row in rows:
            data, extra = row_of(row)
            obj = loaded(model, data)
            if extra:
                obj.__dict__.update(extra)
            out.append(obj)
        return out


class FlatTupleReader:
    """Rows of a ``.tuples()`` query read as peewee's ``ModelTupleCursorWrapper`` reads them (each
    column through its field's conversion, if it has one) without building peewee's wrapper per run
    and calling a conversion on a value it would give back unchanged (an int of an integer field, a
    str of a text field): on small results those cost more than the statement."""

    def __init__(self, reader: ModelTupleCursorWrapper):
        self.row = _row_reader(
            [
                (_fast(field, converter), _kept(field))
                for field, converter in zip(reader.fields, reader.converters, strict=True)
            ],
            "tuple",
        )

    @staticmethod
    def fits(reader) -> bool:
        return type(reader) is ModelTupleCursorWrapper

    def read(self, rows: list[tuple]) -> list[tuple]:
        return list(map(self.row, rows))


# server-side statements: their names by SQL text, and the names prepared on each connection so far
_NAMES: dict[str, str] = {}
_SEQUENCE = itertools.count(1)
_ON_CONNECTION: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_PLACEHOLDER = re.compile(r"%%|%s")
UNKNOWN_STATEMENT = "26000"  # PostgreSQL's invalid_sql_statement_name: the session lost its statements


def execute(sql: str, values: Sequence[Any]) -> Any:
    """``database.execute_sql(sql, values)``, where on PostgreSQL ``sql`` (each ``%s`` one of ``values``)
    is prepared on the server once per connection and run with ``EXECUTE``: parsed and planned once.
    Only for SQL whose best plan does not depend on the values (see the module's docstring)."""
    if isinstance(database.obj, SqliteDatabase):
        return database.execute_sql(sql, values)
    name = _NAMES.get(sql)
    if name is None:
        with _LOCK:
            name = _NAMES.setdefault(sql, f"poggio_{next(_SEQUENCE)}")
    conn = database.connection()
    with _LOCK:
        prepared = _ON_CONNECTION.setdefault(conn, set())
    run = f"EXECUTE {name}({', '.join(['%s'] * len(values))})" if values else f"EXECUTE {name}"
    if name in prepared:
        try:
            return database.execute_sql(run, values)
        except Exception as exc:  # the session was reset under us (DISCARD ALL): prepare it again
            driver = exc.__cause__ or exc.__context__  # peewee raises its own, from the driver's
            if getattr(driver, "pgcode", None) != UNKNOWN_STATEMENT or database.in_transaction():
                raise
            prepared.clear()
    numbers = itertools.count(1)
    text = _PLACEHOLDER.sub(lambda m: m.group() if m.group() == "%%" else f"${next(numbers)}", sql)
    database.execute_sql(f"PREPARE {name} AS {text}", ())  # with (), the driver turns %% into %
    prepared.add(name)
    return database.execute_sql(run, values)


def _inline_constants(sql: str, params: list[Any]) -> str:
    """``sql`` with its non-slot values written in as SQL literals (quoted by the driver): a server-side
    statement takes only the slots as parameters, and PostgreSQL cannot tell the type of a bare
    parameter in a select list."""
    cursor = database.connection().cursor()
    values = iter(params)

    def literal(match: re.Match) -> str:
        if match.group() == "%%":
            return "%%"
        value = next(values)
        if isinstance(value, Slot):
            return "%s"
        return cursor.mogrify("%s", (value,)).decode().replace("%", "%%")

    try:
        return _PLACEHOLDER.sub(literal, sql)
    finally:
        cursor.close()


class Prepared:
    def __init__(self, build: Callable[[], Any], plan_once: bool = False):
        """``plan_once``: on PostgreSQL, prepared on the server once per connection (see the module's
        docstring for when that is right)."""
        self._build = build
        self._plan_once = plan_once
        self._compiled: dict[type, tuple[Any, str, list[Any], list[tuple[int, str, Any]]]] = {}
        self._readers: dict[type, dict[str, Any]] = {}
        self._flat: dict[type, FlatModelReader | FlatTupleReader] = {}

    def _compile(self) -> tuple[Any, str, list[Any], list[tuple[int, str, Any]]]:
        """``(query, sql, params, slots)``: ``params`` with the slots' places to fill, ``slots`` says
        where, which value, and its field's conversion (``db_value``) if any."""
        kind = type(database.obj)  # the dialect: quoting and placeholder style
        compiled = self._compiled.get(kind)
        if compiled is None:
            query = self._build()
            sql, params = query.sql()
            if isinstance(query, Insert) and not all(isinstance(p, Slot) for p in params):
                # a value not given as a slot is compiled in for good: a field's default (a creation
                # time) would be the same for every row ever inserted
                raise TypeError("a prepared INSERT takes every column's value as a slot, defaults included")
            if self._plan_once and not isinstance(database.obj, SqliteDatabase):
                sql, params = _inline_constants(sql, params), [p for p in params if isinstance(p, Slot)]
            slots = [
                (i, p.name, p.field.db_value if p.field is not None else None)
                for i, p in enumerate(params)
                if isinstance(p, Slot)
            ]
            compiled = self._compiled[kind] = (query, sql, params, slots)
        return compiled

    def _bind(self, values: dict[str, Any]) -> tuple[Any, str, list[Any]]:
        """``(query, sql, params)`` with ``values`` bound to the slots."""
        query, sql, params, slots = self._compile()
        bound = params.copy()
        for i, name, convert in slots:
            value = values[name]
            bound[i] = convert(value) if convert is not None and value is not None else value
        return query, sql, bound

    def _execute(self, values: dict[str, Any]):
        """``(query, cursor)``: the statement run with ``values`` bound to its slots."""
        query, sql, bound = self._bind(values)
        return query, execute(sql, bound) if self._plan_once else database.execute_sql(sql, bound)

    def _rows(self, values: dict[str, Any], limit: int | None = None) -> list[Any]:
        query, cursor = self._execute(values)
        raw = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        if not raw:
            return []
        # peewee's reader for these rows (models, tuples or dicts, with the fields' conversions); how
        # it reads the columns is worked out once per dialect and reused, it costs more than the query
        kind = type(database.obj)
        flat = self._flat.get(kind)
        if flat is not None:
            return flat.read(raw)
        reader = cursor_reader(query, cursor)
        state = self._readers.get(kind)
        if state is None:
            reader.initialize()
            self._readers[kind] = {k: v for k, v in vars(reader).items() if k not in _PER_CURSOR}
            for flat_kind in (FlatModelReader, FlatTupleReader):
                if flat_kind.fits(reader):
                    self._flat[kind] = flat = flat_kind(reader)
                    return flat.read(raw)
        else:
            vars(reader).update(state)
        return [reader.process_row(row) for row in raw]

    def run(self, **values: Any) -> list[Any]:
        """Execute with ``values`` for the slots; the rows as the query would give them."""
        return self._rows(values)

    def all(self, **values: Any) -> list[Any]:
        return self._rows(values)

    def first(self, **values: Any) -> Any:
        """The first row, or None."""
        rows = self._rows(values, limit=1)
        return rows[0] if rows else None

    @classmethod
    def insert_into(cls, model: type[Model]) -> Prepared:
        """The INSERT of one ``model`` row, every column but its key a slot named after its field
        (defaults included: give each value at every ``write``)."""
        key = model._meta.primary_key
        return cls(lambda: model.insert({f: slot(f.name, f) for f in model._meta.sorted_fields if f is not key}))

    @classmethod
    def update_of(cls, model: type[Model], fields: Iterable[str]) -> Prepared:
        """The UPDATE of these ``fields`` (names) of the ``model`` row whose key is the slot ``id``,
        each field a slot named after it; compiled once per model and set of fields."""
        return _update_of(model, frozenset(fields))

    def write_later(self, **values: Any) -> None:
        """:meth:`write` whose result nobody reads: on PostgreSQL sent with the transaction's next
        statement, in the same round trip (:func:`poggio.storage.db.write_later`)."""
        if self._plan_once:
            raise TypeError("a statement planned once runs by name: write it with write()")
        _, sql, bound = self._bind(values)
        write_later(sql, bound)

    def write(self, **values: Any) -> int:
        """Run an INSERT, UPDATE or DELETE (built with slots, in the caller's write transaction) with
        ``values``: the new row's primary key for an INSERT, else how many rows it changed. Peewee
        builds a ``save()`` or ``create()`` anew each time, at several times SQLite's cost of the write."""
        query, cursor = self._execute(values)
        if isinstance(query, Insert):
            if cursor.description:  # PostgreSQL: INSERT ... RETURNING the key
                return cursor.fetchone()[0]
            return cursor.lastrowid
        return cursor.rowcount


@functools.cache
def _update_of(model: type[Model], fields: frozenset[str]) -> Prepared:
    key = model._meta.primary_key
    return Prepared(
        lambda: model.update({getattr(model, f): slot(f, getattr(model, f)) for f in sorted(fields)}).where(
            key == slot("id")
        )
    )
