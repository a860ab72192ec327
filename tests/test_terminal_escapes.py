"""Stored values an outsider chose (an app's self-asserted name, a client's name and version, a token
name) never reach an admin's terminal or spreadsheet as control characters: escape sequences that
retitle the window or write the clipboard (OSC 52) come out as visible text, in every CLI listing and
in the CSV export (command line and portal)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from click.testing import CliRunner

from poggio.commands.cli import main
from poggio.display import cell, visible
from poggio.identity.oauth import OAuthService
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_user, create_workspace
from poggio.records.audit import Actor
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, OAuthGrant, Workspace

# a window title change, a clipboard write (OSC 52), a C1 CSI and a bidi override
HOSTILE = "Evil\x1b]0;pwned\x07App\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\u202e\r\n\tend"
RAW = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def raw_controls(text: str) -> list[str]:
    """Control characters in ``text`` other than the line breaks and tabs of the layout itself."""
    return [c for line in text.split("\n") for c in RAW.findall(line.replace("\t", ""))]


def test_visible_escapes_every_control_character():
    assert visible("a\x1bb\x07c\x9bd\ne\tf\x7f\u202e") == "a\\x1bb\\x07c\\x9bd\\x0ae\\x09f\\x7f\\u202e"
    assert visible("Ünïcode café — fine") == "Ünïcode café — fine"
    assert visible(None) == ""
    assert cell("=1+1") == "'=1+1" and cell("\tx") == "'\\x09x" and cell("-2") == "'-2" and cell("ok") == "ok"


@pytest.fixture
def seeded(instance):
    cli = Actor.cli()
    ws = create_workspace("acme", "Acme", True, cli)
    admin = create_user("admin@acme.example", "correct horse battery", ws, "admin", cli)
    service = OAuthService()
    client = service.register({"client_name": "Plain", "redirect_uris": ["http://127.0.0.1:5555/cb"]}).client
    # registration refuses control characters today; a name stored before that (or by any other way in)
    # must still reach no terminal raw
    client.name = HOSTILE[:200]
    client.save()
    grant = OAuthGrant.create(workspace=ws, client=client, user=admin, packs="accounts", resource="http://x/mcp")
    TokenService().create(ws, "tok\x1b]0;t\x07", cli)
    Activity.create(
        workspace=ws,
        kind="grant",
        subject_id=grant.id,
        at=utcnow() - dt.timedelta(minutes=1),
        tool="search_accounts",
        outcome="ok",
        client=HOSTILE[:200],
        ip="203.0.113.9",
    )
    return ws


def test_cli_listings_print_no_control_characters(seeded):
    runner = CliRunner()
    for args in (["oauth", "list", "--workspace", "acme"], ["token", "list", "--workspace", "acme"]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert not raw_controls(result.output), (args, result.output)
        assert "\\x1b]" in result.output  # shown, escaped


def test_csv_export_holds_no_control_characters(seeded):
    result = CliRunner().invoke(
        main, ["activity", "export", "--workspace", "acme", "--format", "csv"], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert not raw_controls(result.output), result.output
    (row,) = list(csv.DictReader(io.StringIO(result.output)))
    assert row["client"].startswith("Evil\\x1b]0;pwned\\x07App") and row["subject"].startswith("Evil\\x1b")


def test_portal_csv_export_holds_no_control_characters(seeded, monkeypatch):
    from portal_client import PASSWORD, Browser

    from portal import create_app

    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    create_user("second@acme.example", PASSWORD, Workspace.get(slug="acme"), "admin", Actor.cli())
    app = create_app()
    app.config["TESTING"] = True
    browser = Browser(app.test_client())
    assert browser.sign_in("second@acme.example").status_code == 302
    r = browser.get("/settings/mcp/activity/export.csv")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert not raw_controls(text), text
    assert "App\\x1b]52;c;" in text
