"""Portal fixtures: the Flask app on a temp instance, users of an entitled and a non-entitled workspace,
and a test client that signs in and carries CSRF tokens like a browser."""

from __future__ import annotations

import pytest
from portal_client import PASSWORD, Browser

from poggio.identity.workspaces import create_user, create_workspace
from poggio.records.audit import Actor
from portal import create_app


@pytest.fixture
def app(instance, monkeypatch):
    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    cli = Actor.cli()
    acme = create_workspace("acme", "Acme Inc.", True, cli)
    initrode = create_workspace("initrode", "Initrode", False, cli)
    create_user("admin@acme.example", PASSWORD, acme, "admin", cli)
    create_user("member@acme.example", PASSWORD, acme, "member", cli)
    create_user("admin@initrode.example", PASSWORD, initrode, "admin", cli)
    create_user("both@example.com", PASSWORD, acme, "admin", cli)
    create_user("both@example.com", PASSWORD, initrode, "admin", cli)
    app = create_app()
    app.config["TESTING"] = True
    return app


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def admin(browser):
    assert browser.sign_in("admin@acme.example").status_code == 302
    browser.get("/settings/mcp/")
    return browser
