"""The fast primitives of the pack API: for a tool a benchmark shows is slow the plain way.

Start without this module. A pack's tools are plain peewee queries on its models
(``Model.select().where(...)``, ``.get_or_none``, ``.insert``, ``.update``), written in
``with writing():`` where they change something; that is the pack API of ``from poggio import ...``
and what ``poggio pack new`` and the weather example show. Peewee builds a query's SQL anew at every
call, which costs tens of microseconds per query: nothing to a tool that runs a few times a second,
a third of a request to one that serves thousands (``get_account``, ``search_accounts``;
benchmarks/README.md has the figures). When a benchmark of your tool shows that cost, these help:

- :class:`Prepared` and :func:`slot`: a query compiled to SQL once and run with new values
  (``.first``/``.all`` for a select, ``.write`` for an INSERT, UPDATE or DELETE,
  ``Prepared.insert_into(Model)``, ``Prepared.update_of(Model, fields)``); ``plan_once=True`` also
  prepares it on the PostgreSQL server once per connection.
- ``Prepared.write_later`` and :func:`write_later`, and ``later=True`` of :func:`bulk_insert` and
  :func:`poggio.add_search_terms`: a write whose result the tool does not read, sent on PostgreSQL
  with the transaction's next statement, one round trip fewer while it holds a row lock.
- :func:`loaded` and :func:`row_values`: a model object made from a row's values read by hand (a
  UNION of two models' rows in one statement), and a model object's values by field name to
  validate an output model from in one call.
- :func:`bulk_insert` and :func:`reserve_ids`: many rows at once (imports, demo data), tuples
  written by one statement per batch (``COPY`` on PostgreSQL).

Everything here keeps the rules of the simple API (every query scoped by workspace, writes in the
caller's transaction); docs/pack-authors/advanced.md shows each in use.
"""

from poggio.adapters.peewee import loaded, row_values
from poggio.storage.bulk import insert_rows as bulk_insert
from poggio.storage.bulk import reserve_ids
from poggio.storage.db import write_later
from poggio.storage.prepared import Prepared, slot

__all__ = ["Prepared", "slot", "loaded", "row_values", "write_later", "bulk_insert", "reserve_ids"]
