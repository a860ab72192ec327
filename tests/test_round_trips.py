"""How many statements a read tool sends to the database: on PostgreSQL each is a network round trip,
and the round trips, not Python, bounded get_account there (benchmarks/README.md)."""

from __future__ import annotations

import pytest
from instances import drop_instance, make_instance

from poggio.commands import demo
from poggio.runtime.packs import CursorCodec
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request, tmp_path, monkeypatch):
    inst = make_instance(tmp_path / "instance", request.param)
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    inst.activate()
    registry = PackRegistry.load()
    try:
        with database.connection_context():
            upgrade(registry)
            workspace = demo.build(registry, "acme", accounts=30).workspace
        yield registry, workspace
    finally:
        drop_instance(inst)


def statements(registry, workspace, monkeypatch, tool: str, arguments: dict) -> list[str]:
    """What a call sends on a connection that served one before (on PostgreSQL its first call also
    prepares the statements planned once per connection)."""
    sent: list[str] = []
    ctx = registry.tool_context(
        CursorCodec(b"k" * 16), workspace.id, 1, None, tool, writable=False, caller="test", token_kind="token"
    )
    with database.connection_context():
        registry.tool(tool).run(ctx, arguments)
        execute = database.obj.execute_sql
        monkeypatch.setattr(
            database.obj,
            "execute_sql",
            lambda sql, params=None, *a, **k: sent.append(sql) or execute(sql, params, *a, **k),
        )
        result = registry.tool(tool).run(ctx, arguments)
    monkeypatch.undo()
    assert result.data is not None
    return sent


def test_get_account_is_three_statements(seeded, monkeypatch):
    """The account with its notes, its contacts, its revenue (totals, overdue and next deals): one each."""
    sent = statements(*seeded, monkeypatch, "get_account", {"domain": "example.com"})
    assert len(sent) == 3, sent


@pytest.mark.parametrize("arguments,count", [({}, 1), ({"account_domain": "example.com"}, 2)])
def test_get_revenue_summary_counts_overdue_in_the_same_statement(seeded, monkeypatch, arguments, count):
    sent = statements(*seeded, monkeypatch, "get_revenue_summary", arguments)
    assert len(sent) == count, sent


def test_get_account_shows_the_newest_ten_notes_of_that_account_only(seeded, monkeypatch):
    """The notes come in the account's statement now: the newest ten, ties by id, newest first, and
    none of another account's."""
    import datetime as dt

    from poggio_accounts.models import Account, Note

    registry, workspace = seeded
    with database.connection_context():
        account = Account.get((Account.workspace == workspace.id) & (Account.domain == "example.com"))
        other = Account.select().where((Account.workspace == workspace.id) & (Account.id != account.id)).first()
        at = dt.datetime(2026, 11, 20, 10)
        made = [
            Note.create(
                workspace=workspace.id,
                account=account.id,
                text=f"note {i}",
                author="test",
                created_at=at + dt.timedelta(hours=i // 3),
            )
            for i in range(14)
        ]
        Note.create(workspace=workspace.id, account=other.id, text="not this one", created_at=at + dt.timedelta(days=9))
    ctx = registry.tool_context(
        CursorCodec(b"k" * 16), workspace.id, 1, None, "get_account", writable=False, caller="test", token_kind="token"
    )
    with database.connection_context():
        shown = registry.tool("get_account").run(ctx, {"domain": "example.com"}).data.notes
    expected = sorted(made, key=lambda n: (n.created_at, n.id), reverse=True)[:10]
    assert [(n.id, n.text) for n in shown] == [(n.id, n.text) for n in expected]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "tool,arguments,trips",
    [
        # the deal locked with its account (and the BEGIN); the change, the day totals, the audit row, the COMMIT
        ("update_opportunity", lambda k, ws: {"id": 1, "amount": f"{k}.00"}, 2),
        # the same for a contact, whose account comes in the statement that locks it
        ("update_contact", lambda k, ws: {"email": _a_contact(ws), "title": f"CTO {k}"}, 2),
        # the account (with the BEGIN); the new note, whose id the answer shows; the audit row and the COMMIT
        ("add_note", lambda k, ws: {"domain": "example.com", "text": f"called back {k}"}, 3),
        # the domain checked (with the BEGIN); an id reserved; the account read back (with the new row and its
        # search terms); the audit row and the COMMIT
        ("create_account", lambda k, ws: {"domain": f"new{k}.example", "name": f"New {k}"}, 4),
        (
            "create_contact",
            lambda k, ws: {
                "email": f"new{k}@example.com",
                "first_name": "Ada",
                "last_name": "New",
                "account_domain": "example.com",
            },
            5,
        ),
        (
            "create_opportunity",
            lambda k, ws: {
                "account_domain": "example.com",
                "name": f"Deal {k}",
                "amount": "10.00",
                "currency": "EUR",
                "stage": "proposal",
                "close_date": "2027-01-01",
            },
            4,
        ),
    ],
)
def test_a_write_tool_holds_back_what_it_does_not_read(tmp_path, monkeypatch, tool, arguments, trips):
    """On PostgreSQL a write transaction's BEGIN goes with its first statement and the writes whose
    result it does not read with the next one or its COMMIT (poggio.storage.db.HoldingConnection): while
    update_opportunity holds the deal's row lock, every other writer of that deal waits out its round
    trips. Before: 8, 6, 5, 8, 9 and 7 round trips."""
    from instances import postgres_demo, round_trips

    with postgres_demo(tmp_path / "instance", monkeypatch, accounts=5) as ws:
        registry = PackRegistry.load()
        ctx = registry.tool_context(
            CursorCodec(b"k" * 16), ws.id, 1, None, tool, writable=True, caller="test", token_kind="token"
        )
        registry.tool(tool).run(ctx, arguments(1, ws))  # the first call prepares the statements planned once
        again = arguments(2, ws)
        sent = round_trips(monkeypatch)
        result = registry.tool(tool).run(ctx, again)
        monkeypatch.undo()
        assert result.data is not None
        assert len(sent) == trips, sent


def _a_contact(workspace) -> str:
    from poggio_contacts.models import Contact

    return Contact.select().where(Contact.workspace == workspace.id).order_by(Contact.id).first().email
