"""Prepared queries give exactly what the peewee query they were built from gives."""

from __future__ import annotations

import datetime as dt

import pytest
from instances import postgres_demo
from peewee import Value

from poggio.commands import demo
from poggio.runtime.plugins import PackRegistry
from poggio.storage.db import database
from poggio.storage.prepared import Prepared, execute, slot
from poggio_accounts.models import Account
from poggio_revenue.models import Opportunity


def test_prepared_queries_match_their_peewee_query(instance):
    ws = demo.build(PackRegistry.load(), "acme", accounts=40).workspace
    by_domain = Prepared(
        lambda: Account.select().where((Account.workspace == slot("workspace")) & (Account.domain == slot("domain")))
    )
    for domain in ("example.com", "no-such.example"):
        plain = Account.select().where((Account.workspace == ws.id) & (Account.domain == domain)).first()
        prepared = by_domain.first(workspace=ws.id, domain=domain)
        assert (prepared and prepared.__data__) == (plain and plain.__data__)
    assert by_domain.first(workspace=ws.id + 1, domain="example.com") is None  # the slot, not the first value, decides

    closing = Prepared(
        lambda: (
            Opportunity.select(Opportunity.name, Opportunity.close_date, Opportunity.amount)
            .where(
                (Opportunity.workspace == slot("workspace"))
                & (Opportunity.close_date >= slot("after", Opportunity.close_date))
            )
            .order_by(Opportunity.close_date, Opportunity.id)
            .tuples()
        )
    )
    for after in (dt.date(2020, 1, 1), dt.date(2026, 6, 1), dt.date(2100, 1, 1)):
        plain = list(
            Opportunity.select(Opportunity.name, Opportunity.close_date, Opportunity.amount)
            .where((Opportunity.workspace == ws.id) & (Opportunity.close_date >= after))
            .order_by(Opportunity.close_date, Opportunity.id)
            .tuples()
        )
        got = closing.all(workspace=ws.id, after=after)
        assert got == plain and [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in plain]
        assert all(isinstance(row[1], dt.date) for row in plain)


def test_flat_tuple_rows_are_what_peewee_makes_of_them(instance):
    """``.tuples()`` rows are read by Prepared's own reader (FlatTupleReader): the same values of the
    same types as peewee's (dates, decimals, datetimes, foreign keys, nulls, expressions, a union)."""
    from peewee import fn

    from poggio.storage.prepared import FlatTupleReader
    from poggio_accounts.models import Note

    ws = demo.build(PackRegistry.load(), "acme", accounts=40).workspace
    Note.create(
        workspace=ws.id,
        account=Account.get(Account.domain == "example.com").id,
        text="hi",
        links="[]",
        author="",
    )

    def deals(workspace):
        return (
            Opportunity.select(
                Opportunity.id,
                Opportunity.account,
                Opportunity.amount,
                Opportunity.close_date,
                Opportunity.currency,
                fn.LOWER(Opportunity.stage),
                Value(3),
                Opportunity.name,
            )
            .where(Opportunity.workspace == workspace)
            .order_by(Opportunity.id)
        )

    def notes(workspace):
        return (
            Note.select(Note.id, Note.account, Note.text, Note.links, Note.created_at, Note.author)
            .where(Note.workspace == workspace)
            .order_by(Note.id)
        )

    def union(workspace):
        return Note.select(Value(0), Note.created_at, Note.links).where(
            Note.workspace == workspace
        ) + Opportunity.select(Value(1), Opportunity.close_date, Opportunity.name).where(
            Opportunity.workspace == workspace
        )

    for build in (deals, notes, union):
        prepared = Prepared(lambda build=build: build(slot("workspace")).tuples())
        plain = list(build(ws.id).tuples())
        got = prepared.all(workspace=ws.id)
        assert type(next(iter(prepared._flat.values()))) is FlatTupleReader, build.__name__
        assert len(plain) > 0 and got == plain, build.__name__
        assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in plain], build.__name__
        assert prepared.all(workspace=ws.id + 1) == []


def test_peewee_private_row_reader_is_there():
    """Prepared reads rows through peewee's private ``_get_cursor_wrapper`` (models, tuples, dicts with
    the fields' conversions): fail loudly, by name, when a peewee release renames it."""
    import peewee

    for kind in (peewee.Select, peewee.ModelSelect):
        assert callable(getattr(kind, "_get_cursor_wrapper", None)), (
            f"peewee.{kind.__name__}._get_cursor_wrapper is gone"
        )
    # what the flat readers read off peewee's initialised wrappers (and the model data they write)
    import inspect

    for wrapper in (peewee.ModelObjectCursorWrapper, peewee.ModelTupleCursorWrapper):
        source = inspect.getsource(peewee.BaseModelCursorWrapper.initialize)
        assert issubclass(wrapper, peewee.BaseModelCursorWrapper)
        assert all(f"self.{name}" in source for name in ("columns", "fields", "converters")), source
    assert "self.unique_columns" in inspect.getsource(peewee.ModelDictCursorWrapper.initialize)
    assert all(f"self.{name}" in inspect.getsource(peewee.Model.__init__) for name in ("__data__", "_dirty", "__rel__"))


@pytest.fixture
def postgres(tmp_path, monkeypatch):
    """A PostgreSQL instance with the schema and a small demo workspace, bound in this process."""
    with postgres_demo(tmp_path / "instance", monkeypatch, accounts=20) as ws:
        yield ws


def _server_statements() -> list[str]:
    return [s for (s,) in database.execute_sql("SELECT statement FROM pg_prepared_statements").fetchall()]


@pytest.mark.postgres
def test_plan_once_prepares_on_the_server_once_per_connection_and_matches_peewee(postgres):
    ws = postgres
    # a constant in the select list (PostgreSQL cannot type a bare parameter there) and one with a %
    by_domain = Prepared(
        lambda: (
            Account.select(Value(7).alias("seven"), Account.name)
            .where(
                (Account.workspace == slot("workspace"))
                & (Account.domain == slot("domain"))
                & ~(Account.name ** "%no such name%")
            )
            .tuples()
        ),
        plan_once=True,
    )
    for domain in ("example.com", "no-such.example", "example.com"):
        plain = list(
            Account.select(Value(7).alias("seven"), Account.name)
            .where((Account.workspace == ws.id) & (Account.domain == domain) & ~(Account.name ** "%no such name%"))
            .tuples()
        )
        assert by_domain.all(workspace=ws.id, domain=domain) == plain
    assert by_domain.first(workspace=ws.id, domain="example.com") == (7, "Example Corp")
    mine = [s for s in _server_statements() if "no such name" in s]
    assert len(mine) == 1 and "$1" in mine[0] and "$2" in mine[0] and "%no such name%" in mine[0], mine

    database.execute_sql("DEALLOCATE ALL")  # a session reset under us (a pooler's DISCARD ALL)
    assert by_domain.first(workspace=ws.id, domain="example.com") == (7, "Example Corp")


@pytest.mark.postgres
def test_hand_written_sql_is_prepared_once_too(postgres):
    sql = "SELECT COUNT(*) FROM account WHERE workspace_id = %s AND name LIKE '%%Corp%%'"
    first = execute(sql, (postgres.id,)).fetchone()
    again = execute(sql, (postgres.id,)).fetchone()
    assert first == again == database.execute_sql(sql, (postgres.id,)).fetchone()
    assert [s for s in _server_statements() if "Corp" in s] == [
        "PREPARE poggio_%s AS SELECT COUNT(*) FROM account WHERE workspace_id = $1 AND name LIKE '%%Corp%%'".replace(
            "%%", "%"
        ).replace("poggio_%s", _name(sql))
    ]


def _name(sql: str) -> str:
    from poggio.storage.prepared import _NAMES

    return _NAMES[sql]


def test_flat_model_rows_are_what_peewee_makes_of_them(instance):
    """One-model rows are read by Prepared's own reader (FlatModelReader), not through peewee's
    field descriptors: the objects must be the same, field for field (foreign keys, datetimes,
    nulls), with extra columns as attributes, nothing dirty, and writable as peewee's are."""
    from poggio.storage.prepared import FlatModelReader
    from poggio_accounts.models import Note

    ws = demo.build(PackRegistry.load(), "acme", accounts=40).workspace
    matching = Prepared(
        lambda: (
            Account.select(Account, Account.name.alias("also_name"))
            .where(Account.workspace == slot("workspace"))
            .order_by(Account.id)
            .objects()
        )
    )
    plain = list(
        Account.select(Account, Account.name.alias("also_name"))
        .where(Account.workspace == ws.id)
        .order_by(Account.id)
        .objects()
    )
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

    from poggio.storage.prepared import _fast

    field = DateTimeField()
    quick = _fast(field, field.python_value)
    for value in (
        "2026-11-25 15:08:53.123456",
        "2026-11-25 15:08:53",
        "2026-11-25T15:08:53Z",
        "2026-11-25",
        "2026-11-25 15:08:53.123456+02:00",
        "2026-11-25 15:08",
        "25/11/2026",
        "garbage",
        "",
        None,
        dt.datetime(2026, 1, 1),
        1764083333,
    ):
        assert quick(value) == field.python_value(value), value


def _writes_match_peewee(ws_id: int) -> None:
    from poggio.storage.db import writing
    from poggio_accounts.models import Note

    account = Account.get((Account.workspace == ws_id) & (Account.domain == "example.com"))
    insert = Prepared.insert_into(Note)
    when = dt.datetime(2026, 12, 2, 3, 4, 5, 678901)
    values = {
        "workspace": ws_id,
        "account": account,
        "text": "it's 100% agreed",
        "links": '[{"kind": "opportunity_id", "value": 7}]',
        "author": "agent",
        "created_at": when,
    }
    with writing():
        first, second = insert.write(**values), insert.write(**{**values, "text": "again"})
    assert second == first + 1  # the new row's key, on either database
    row = Note.get_by_id(first)
    assert (row.account_id, row.text, row.links, row.created_at) == (
        account.id,
        "it's 100% agreed",
        '[{"kind": "opportunity_id", "value": 7}]',
        when,
    )

    rename = Prepared(
        lambda: Note.update({Note.text: slot("text", Note.text)}).where(
            (Note.workspace == slot("workspace")) & (Note.id >= slot("id"))
        )
    )
    with writing():
        assert rename.write(workspace=ws_id, id=first, text="changed") == 2  # rows changed
        assert rename.write(workspace=ws_id + 1, id=first, text="not mine") == 0
    assert [n.text for n in Note.select().where(Note.id >= first).order_by(Note.id)] == ["changed", "changed"]
    update = Prepared.update_of(Note, ["text", "created_at"])
    assert Prepared.update_of(Note, ("created_at", "text")) is update  # one per model and set of fields
    with writing():
        assert update.write(id=first, text="only this one", created_at=when + dt.timedelta(days=1)) == 1
    assert [(n.text, n.created_at) for n in Note.select().where(Note.id >= first).order_by(Note.id)] == [
        ("only this one", when + dt.timedelta(days=1)),
        ("changed", when),
    ]
    forget = Prepared(lambda: Note.delete().where(Note.id == slot("id")))
    with writing():
        assert forget.write(id=second) == 1
    assert Note.get_or_none(Note.id == second) is None


def test_prepared_writes_give_the_new_key_or_the_rows_changed(instance):
    _writes_match_peewee(demo.build(PackRegistry.load(), "acme", accounts=5).workspace.id)


@pytest.mark.postgres
def test_prepared_writes_on_postgres(postgres):
    _writes_match_peewee(postgres.id)


def test_a_prepared_insert_refuses_a_value_compiled_in(instance):
    """A column left to its default, or given a plain value, would be written the same into every row
    the compiled statement ever inserts (a creation time frozen at the first call): refused loudly."""
    from poggio.storage.models import AuditEvent

    frozen = Prepared(lambda: AuditEvent.insert({AuditEvent.action: slot("action"), AuditEvent.actor_label: "cli"}))
    with pytest.raises(TypeError, match="every column's value as a slot"):
        frozen.write(action="token.created")
