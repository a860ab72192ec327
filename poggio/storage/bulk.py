"""Many rows written fast: one INSERT, compiled once, run over batches of plain tuples.

Peewee's ``insert_many`` builds the SQL of every batch from Python objects: ~40 µs per row, most of
the cost of an import or the demo. Here the statement is written once per table and columns and run
once per batch: on SQLite an ``INSERT ... SELECT`` over the batch sent as one JSON array (one
statement, which SQLite runs without the interpreter's lock; a batch of a few rows, ``FEW``, goes row
by row); on PostgreSQL ``COPY ... FROM STDIN`` of
the batch as text, or ``execute_values``' multi-row VALUES pages for an upsert, which COPY cannot do.
Values are converted as the model's fields would (dates, decimals). Ids are reserved up
front (:func:`reserve_ids`) so the caller knows each new row's id without reading it back.

Always inside the caller's write transaction (``poggio.storage.db.writing``): on SQLite that holds the write
lock, which is what makes the ids of :func:`reserve_ids` safe to use.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any

import orjson
from peewee import (
    AutoField,
    CharField,
    DateField,
    DateTimeField,
    Field,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

from poggio.storage.db import database, write_later

BATCH = 5000
FEW = 16  # a batch of at most this many rows is written row by row on SQLite; a longer one as JSON
# fields whose values the caller passes ready for the database (str, int, an id, a date or datetime,
# which both drivers take as they are); others are converted by the field
_PLAIN = (AutoField, CharField, TextField, IntegerField, ForeignKeyField, DateField, DateTimeField)


def _converter(field: Field):
    return None if type(field) in _PLAIN else field.db_value


def insert_rows(
    model: type[Model],
    fields: Sequence[Field],
    rows: Iterable[Sequence[Any]],
    batch: int = BATCH,
    on_conflict: str = "",
    same: dict[Field, int | str] | None = None,
    later: bool = False,
) -> int:
    """Insert ``rows`` (tuples in the order of ``fields``) into ``model``'s table; returns how many.
    ``on_conflict``: SQL that follows the VALUES (``ON CONFLICT (...) DO UPDATE ...``, which SQLite
    and PostgreSQL both read). ``same``: columns whose value (an int or a str) is that of every row,
    written once into the statement instead of bound per row: SQLite binds value by value, and a
    batch of search terms shares its workspace and kind. ``later``: a few rows of a tool's write,
    which on PostgreSQL go with the transaction's next statement (:func:`poggio.storage.db.write_later`)."""
    table = model._meta.table_name
    same = same or {}
    literals = [_literal(v) for v in same.values()]  # checks them on either database
    names = ", ".join(f'"{f.column_name}"' for f in [*same, *fields])
    converters = [(i, c) for i, c in enumerate(_converter(f) for f in fields) if c is not None]
    sqlite = isinstance(database.obj, SqliteDatabase)
    copy = not sqlite and not on_conflict and not later
    prefix = _copy_text([list(same.values())])[:-1] + "\t" if same and copy else ""  # COPY: each line starts so
    if sqlite:
        # the batch as one JSON array, one row per element: SQLite runs the whole INSERT in one
        # step, without the interpreter's lock (executemany takes it back for every row, and waits
        # up to a switch interval each time another thread is busy)
        picks = [f"json_extract(value, '$[{i}]')" for i in range(len(fields))]
        sql = (
            f'INSERT INTO "{table}" ({names}) SELECT {", ".join(literals + picks)} '
            f"FROM json_each(?) WHERE true {on_conflict}"
        )  # WHERE: an upsert's ON follows a SELECT
    elif copy:
        sql = f'COPY "{table}" ({names}) FROM STDIN'
    else:
        from psycopg2.extras import execute_values

        sql = f'INSERT INTO "{table}" ({names}) VALUES %s {on_conflict}'
    cursor = database.cursor()
    few = None
    written = 0
    rows = iter(rows)
    while chunk := list(islice(rows, batch)):
        if converters:
            for n, row in enumerate(chunk):
                row = list(row)
                for i, convert in converters:
                    row[i] = convert(row[i])
                chunk[n] = row
        if sqlite and len(chunk) <= FEW:
            # a few rows (a tool's write): a statement per row costs less than reading JSON (and a
            # multi-row VALUES list, measured on these tables), and takes the interpreter's lock back
            # only a few times
            if few is None:
                few = (
                    f'INSERT INTO "{table}" ({names}) '
                    f"VALUES ({', '.join(literals + ['?'] * len(fields))}) {on_conflict}"
                )
            cursor.executemany(few, chunk)
        elif sqlite:
            cursor.execute(sql, (orjson.dumps(chunk, default=_json_value, option=orjson.OPT_PASSTHROUGH_DATETIME),))
        elif copy:
            cursor.copy_expert(sql, io.StringIO(_copy_text(chunk, prefix)))
        elif later:
            row_sql = f"({', '.join(['%s'] * (len(same) + len(fields)))})"
            constants = tuple(same.values())
            write_later(
                sql.replace("%s", ", ".join([row_sql] * len(chunk)), 1),
                [value for row in chunk for value in (*constants, *row)],
            )
        else:
            constants = tuple(same.values())
            execute_values(cursor, sql, [(*constants, *row) for row in chunk], page_size=1000)
        written += len(chunk)
    return written


def _json_value(value: Any) -> str:
    """A value JSON has no type for, as text SQLite stores as sqlite3's adapters would bind it."""
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    raise TypeError(f"a bulk-written value must be text, a number, a date or None, not {type(value).__name__}")


def _literal(value: int | str) -> str:
    """``value`` as an SQL literal that SQLite and PostgreSQL read alike."""
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"a column's common value must be an int or a str, not {type(value).__name__}")


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[Sequence[Any]], prefix: str = "") -> str:
    """``rows`` in COPY's text format, each line after ``prefix``: values tab-separated, ``\\N`` for
    NULL, backslash escapes. Numbers, dates, datetimes and decimals are written as their ``str()``,
    which PostgreSQL reads (no bytes: no bulk-written field holds any). Most text has nothing to escape:
    the batch is joined as it is and used
    when its separators and backslashes add up (one per NULL, none from the values); otherwise every
    text is escaped."""
    lines = ["\t".join(["\\N" if v is None else v if type(v) is str else str(v) for v in row]) for row in rows]
    plain = "\n".join(lines)
    width = len(rows[0]) if rows else 0
    if not (
        plain.count("\n") == len(rows) - 1
        and plain.count("\t") == len(rows) * (width - 1)
        and "\r" not in plain
        and plain.count("\\") == sum(row.count(None) for row in rows)
    ):
        lines = [
            "\t".join(["\\N" if v is None else v.translate(_ESCAPES) if type(v) is str else str(v) for v in row])
            for row in rows
        ]
    return "".join([prefix + line + "\n" for line in lines])


def reserve_ids(model: type[Model], count: int) -> list[int]:
    """``count`` new primary keys of ``model`` for rows the caller is about to insert with them."""
    if count <= 0:
        return []
    key = model._meta.primary_key
    assert key, f"{model.__name__} has a primary key"
    table, pk = model._meta.table_name, key.column_name
    if isinstance(database.obj, SqliteDatabase):
        (top,) = database.execute_sql(f'SELECT COALESCE(MAX("{pk}"), 0) FROM "{table}"').fetchone()
        return list(range(top + 1, top + 1 + count))
    cursor = database.execute_sql(
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", (f'"{table}"', pk, count)
    )
    return [i for (i,) in cursor.fetchall()]


def existing_keys(field: Field, values: Iterable[Any], scope: Field, scope_value: Any) -> list[tuple[Any, Any]]:
    """``(value, id)`` of the rows whose ``field`` is one of ``values`` (and ``scope`` is
    ``scope_value``): the look-up an import makes per chunk, on the cursor (peewee took ~5 µs to build
    each value of a long ``IN`` list)."""
    model = field.model
    values = list(values)
    mark = "?" if isinstance(database.obj, SqliteDatabase) else "%s"
    pk = model._meta.primary_key.column_name
    found: list[tuple[Any, Any]] = []
    for start in range(0, len(values), 500):
        part = values[start : start + 500]
        sql = (
            f'SELECT "{field.column_name}", "{pk}" FROM "{model._meta.table_name}" '
            f'WHERE "{scope.column_name}" = {mark} AND "{field.column_name}" IN ({", ".join([mark] * len(part))})'
        )
        found += database.execute_sql(sql, [scope_value, *part]).fetchall()
    return found
