"""What Poggio uses of peewee beyond its public API (pinned in pyproject.toml, ``peewee>=4.5,<5``).

- A model object's values by field name: ``Model.__data__`` (what ``playhouse.shortcuts.model_to_dict``
  reads), and a model object made from such values with nothing dirty (``__data__``, ``_dirty``,
  ``__rel__``, as ``Model.__init__`` sets them): setting each value through the field descriptors
  cost more than reading the row (benchmarks/README.md, "The figures behind design decisions").
- A query's row reader for a cursor of its compiled SQL, run by hand (``_get_cursor_wrapper``):
  :class:`poggio.storage.prepared.Prepared` reads its rows as peewee would.
- The pool's check-out, check-in and discard steps (``_is_closed``, ``_close``, ``_close_raw``),
  which :class:`poggio.storage.db.PooledPostgres` overrides.

:func:`check` raises, naming the attribute, when a peewee release changes one of them.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

import peewee

M = TypeVar("M", bound=peewee.Model)

# the pool's private steps PooledPostgres overrides, with their arguments after self
POOL_STEPS = {"_is_closed": ["conn"], "_close": ["conn", "close_conn"], "_close_raw": ["conn"]}


def row_values(obj: peewee.Model) -> dict[str, Any]:
    """``obj``'s values by field name (the foreign keys' as ids), as read from its row: the dict
    itself, not a copy; do not change it."""
    return obj.__data__


def loaded(model: type[M], data: dict[str, Any]) -> M:
    """A ``model`` object as peewee makes one of a row it read: ``data`` (the values by field name,
    already the fields' Python values) as its data, nothing dirty."""
    obj: Any = model.__new__(model)
    obj.__data__, obj._dirty, obj.__rel__ = data, set(), {}
    return obj


def cursor_reader(query: Any, cursor: Any) -> Any:
    """peewee's row reader (a ``CursorWrapper``) of ``query``'s rows on ``cursor``, a cursor of the
    query's own SQL run by hand: models, tuples or dicts, with the fields' conversions."""
    return query._get_cursor_wrapper(cursor)


def check() -> None:
    """Raise ``RuntimeError`` naming what this module relies on and the installed peewee lacks."""
    problems = []
    for kind in (peewee.Select, peewee.ModelSelect, peewee.CompoundSelectQuery):
        if not callable(getattr(kind, "_get_cursor_wrapper", None)):
            problems.append(f"peewee.{kind.__name__}._get_cursor_wrapper is gone")
    init = inspect.getsource(peewee.Model.__init__)
    problems += [
        f"peewee.Model.__init__ no longer sets self.{n}"
        for n in ("__data__", "_dirty", "__rel__")
        if f"self.{n}" not in init
    ]
    source = inspect.getsource(peewee.BaseModelCursorWrapper.initialize)
    problems += [
        f"peewee.BaseModelCursorWrapper.initialize no longer sets self.{n}"
        for n in ("columns", "fields", "converters")
        if f"self.{n}" not in source
    ]
    if "self.unique_columns" not in inspect.getsource(peewee.ModelDictCursorWrapper.initialize):
        problems.append("peewee.ModelDictCursorWrapper.initialize no longer sets self.unique_columns")
    from playhouse.pool import PooledDatabase

    for name, arguments in POOL_STEPS.items():
        step = getattr(PooledDatabase, name, None)
        if step is None:
            problems.append(f"playhouse.pool.PooledDatabase.{name} is gone")
        elif list(inspect.signature(step).parameters)[1:] != arguments:
            problems.append(f"playhouse.pool.PooledDatabase.{name} now takes {inspect.signature(step)}")
    if problems:
        raise RuntimeError("peewee changed what poggio.adapters.peewee relies on: " + "; ".join(problems))
