"""The accounts pack's notes keep their links generically (``note.links``, JSON): the migration that
moved the contacts and revenue packs' two columns into it, down and up again, on SQLite and PostgreSQL,
and add_note's two named link arguments still working for clients beside ``about``."""

from __future__ import annotations

import json

import pytest
from instances import postgres_demo

from poggio.commands import demo
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import runners
from poggio.storage.db import database, writing
from poggio.testing import tool_context


def _columns() -> set[str]:
    return {c.name for c in database.get_columns("note")}


def _round_trip(ws_id: int) -> None:
    """Down to 0003 (the two columns), notes written in that shape, up again: each link and its label kept."""
    accounts = dict(runners(PackRegistry.load()))["accounts"]
    assert accounts.down() == ["0004_note_links"]
    assert {"contact_email", "opportunity_id"} <= _columns()
    account = database.execute_sql(
        f"SELECT id FROM account WHERE workspace_id = {database.param} ORDER BY id LIMIT 1", (ws_id,)
    ).fetchone()[0]
    old = [  # contact_email, opportunity_id, links (the labels, "; "-joined)
        ("ada@example.com", 7, "Ada Adams <ada@example.com>; opportunity 7 Renewal"),
        (None, 8, "opportunity 8 Upsell"),
        ("bo@example.com", None, ""),  # a label lost: the link is kept without one
        (None, None, ""),
    ]
    columns = "workspace_id, account_id, text, contact_email, opportunity_id, links, author, created_at"
    insert = f"INSERT INTO note ({columns}) VALUES ({', '.join([database.param] * 8)})"
    with writing():
        for i, (email, deal, labels) in enumerate(old):
            database.execute_sql(
                insert, (ws_id, account, f"old note {i}", email, deal, labels, "agent", "2026-12-01 10:00:00")
            )
    assert accounts.up() == ["0004_note_links"]
    assert not {"contact_email", "opportunity_id"} & _columns()
    rows = database.execute_sql("SELECT text, links FROM note WHERE text LIKE 'old note %%' ORDER BY text").fetchall()
    assert [json.loads(links) for _, links in rows] == [
        [
            {"kind": "contact_email", "value": "ada@example.com", "label": "Ada Adams <ada@example.com>"},
            {"kind": "opportunity_id", "value": 7, "label": "opportunity 7 Renewal"},
        ],
        [{"kind": "opportunity_id", "value": 8, "label": "opportunity 8 Upsell"}],
        [{"kind": "contact_email", "value": "bo@example.com"}],
        [],
    ]
    # and down once more: the columns come back with their values
    assert accounts.down() == ["0004_note_links"]
    back = database.execute_sql(
        "SELECT contact_email, opportunity_id, links FROM note WHERE text LIKE 'old note %%' ORDER BY text"
    ).fetchall()
    assert [tuple(r) for r in back] == [
        ("ada@example.com", 7, "Ada Adams <ada@example.com>; opportunity 7 Renewal"),
        (None, 8, "opportunity 8 Upsell"),
        ("bo@example.com", None, ""),
        (None, None, ""),
    ]
    assert accounts.up() == ["0004_note_links"]


def test_note_links_migration_sqlite(instance):
    ws = demo.build(PackRegistry.load(), "acme", accounts=5).workspace
    _round_trip(ws.id)


@pytest.mark.postgres
def test_note_links_migration_postgres(tmp_path, monkeypatch):
    with postgres_demo(tmp_path / "instance", monkeypatch, accounts=5) as ws:
        _round_trip(ws.id)


def test_add_note_named_links_and_about_agree(instance):
    """The two named link arguments are kinds like any other: given also in ``about``, they must agree;
    the note answers them in its named fields and in ``about``."""
    from poggio import ToolError
    from poggio_contacts import Contact

    registry = PackRegistry.load()
    ws = demo.build(registry, "acme", accounts=5).workspace
    contact = Contact.select().where(Contact.workspace == ws.id).join_from(Contact, Contact.account.rel_model).first()
    domain = contact.account.domain
    add_note = registry.tool("add_note")
    ctx = tool_context(ws.id, "add_note", registry=registry)
    note = add_note(ctx, domain=domain, text="Met.", contact_email=contact.email.upper()).data
    assert note.contact_email == contact.email and note.about == {"contact_email": contact.email}
    same = add_note(
        ctx, domain=domain, text="Again.", contact_email=contact.email, about={"contact_email": contact.email}
    )
    assert same.data.about == {"contact_email": contact.email}
    with pytest.raises(ToolError, match="contact_email: given twice, differently"):
        add_note(
            ctx, domain=domain, text="x", contact_email=contact.email, about={"contact_email": "other@example.com"}
        )
