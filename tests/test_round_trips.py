"""How many statements a read tool sends to the database: on PostgreSQL each is a network round trip,
and the round trips, not Python, bounded get_account there (benchmarks/README.md)."""

from __future__ import annotations

import pytest
from instances import drop_instance, make_instance

from poggio import demo
from poggio.db import database
from poggio.packs import CursorCodec
from poggio.plugins import PackRegistry
from poggio.schema import upgrade


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
    ctx = registry.tool_context(CursorCodec(b"k" * 16), workspace.id, 1, None, tool, writable=False, caller="test",
                                token_kind="token")
    with database.connection_context():
        registry.tool(tool).run(ctx, arguments)
        execute = database.obj.execute_sql
        monkeypatch.setattr(database.obj, "execute_sql",
                            lambda sql, params=None, *a, **k: sent.append(sql) or execute(sql, params, *a, **k))
        result = registry.tool(tool).run(ctx, arguments)
    monkeypatch.undo()
    assert result.data is not None
    return sent


def test_get_account_is_four_statements(seeded, monkeypatch):
    """The account, its contacts, its revenue (totals, overdue and next deals in one statement), its notes."""
    sent = statements(*seeded, monkeypatch, "get_account", {"domain": "example.com"})
    assert len(sent) == 4, sent


@pytest.mark.parametrize("arguments,count", [({}, 1), ({"account_domain": "example.com"}, 2)])
def test_get_revenue_summary_counts_overdue_in_the_same_statement(seeded, monkeypatch, arguments, count):
    sent = statements(*seeded, monkeypatch, "get_revenue_summary", arguments)
    assert len(sent) == count, sent
