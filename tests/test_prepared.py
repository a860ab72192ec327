"""Prepared queries give exactly what the peewee query they were built from gives."""

from __future__ import annotations

import datetime as dt

from poggio import demo
from poggio.plugins import PackRegistry
from poggio.prepared import Prepared, slot
from poggio_accounts.models import Account
from poggio_revenue.models import Opportunity


def test_prepared_queries_match_their_peewee_query(instance):
    ws = demo.build(PackRegistry.load(), "acme", accounts=40).workspace
    by_domain = Prepared(lambda: Account.select().where(
        (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))))
    for domain in ("example.com", "no-such.example"):
        plain = Account.select().where((Account.workspace == ws.id) & (Account.domain == domain)).first()
        prepared = by_domain.first(workspace=ws.id, domain=domain)
        assert (prepared and prepared.__data__) == (plain and plain.__data__)
    assert by_domain.first(workspace=ws.id + 1, domain="example.com") is None  # the slot, not the first value, decides

    closing = Prepared(lambda: (
        Opportunity.select(Opportunity.name, Opportunity.close_date, Opportunity.amount)
        .where((Opportunity.workspace == slot("workspace"))
               & (Opportunity.close_date >= slot("after", Opportunity.close_date)))
        .order_by(Opportunity.close_date, Opportunity.id).tuples()))
    for after in (dt.date(2020, 1, 1), dt.date(2026, 6, 1), dt.date(2100, 1, 1)):
        plain = list(Opportunity.select(Opportunity.name, Opportunity.close_date, Opportunity.amount)
                     .where((Opportunity.workspace == ws.id) & (Opportunity.close_date >= after))
                     .order_by(Opportunity.close_date, Opportunity.id).tuples())
        assert closing.all(workspace=ws.id, after=after) == plain
        assert all(isinstance(row[1], dt.date) for row in plain)


def test_peewee_private_row_reader_is_there():
    """Prepared reads rows through peewee's private ``_get_cursor_wrapper`` (models, tuples, dicts with
    the fields' conversions): fail loudly, by name, when a peewee release renames it."""
    import peewee

    for kind in (peewee.Select, peewee.ModelSelect):
        assert callable(getattr(kind, "_get_cursor_wrapper", None)), f"peewee.{kind.__name__}._get_cursor_wrapper is gone"


def test_flat_model_rows_are_what_peewee_makes_of_them(instance):
    """One-model rows are read by Prepared's own reader (FlatModelReader), not through peewee's
    field descriptors: the objects must be the same, field for field (foreign keys, datetimes,
    nulls), with extra columns as attributes, nothing dirty, and writable as peewee's are."""
    from poggio.prepared import FlatModelReader
    from poggio_accounts.models import Note

    ws = demo.build(PackRegistry.load(), "acme", accounts=40).workspace
    matching = Prepared(lambda: Account.select(Account, Account.name.alias("also_name"))
                        .where(Account.workspace == slot("workspace")).order_by(Account.id).objects())
    plain = list(Account.select(Account, Account.name.alias("also_name")).where(Account.workspace == ws.id)
                 .order_by(Account.id).objects())
    fast = matching.all(workspace=ws.id)
    assert next(iter(matching._flat.values())).__class__ is FlatModelReader  # the fast reader was used
    assert len(fast) == len(plain) == 40
    for a, b in zip(fast, plain, strict=True):
        assert type(a) is Account and a.__data__ == b.__data__ and a.also_name == b.also_name == a.name
        assert a._dirty == set() == b._dirty and a.workspace_id == ws.id and a.workspace.id == ws.id
        assert isinstance(a.updated_at, dt.datetime) or a.updated_at is None
    first = fast[0]
    first.description = "changed"
    assert first._dirty == {"description"}
    first.save()
    assert Account.get_by_id(first.id).description == "changed"
    notes = Prepared(lambda: Note.select().where(Note.workspace == slot("workspace")))
    assert notes.all(workspace=ws.id) == list(Note.select().where(Note.workspace == ws.id))


def test_quick_datetime_reading_gives_what_peewee_gives():
    from peewee import DateTimeField

    from poggio.prepared import _fast

    field = DateTimeField()
    quick = _fast(field, field.python_value)
    for value in ("2026-11-25 15:08:53.123456", "2026-11-25 15:08:53", "2026-11-25T15:08:53Z", "2026-11-25",
                  "2026-11-25 15:08:53.123456+02:00", "2026-11-25 15:08", "25/11/2026", "garbage", "", None,
                  dt.datetime(2026, 1, 1), 1764083333):
        assert quick(value) == field.python_value(value), value
