"""Portal fixtures: the Flask app on a temp instance, users of an entitled and a non-entitled workspace,
and a test client that signs in and carries CSRF tokens like a browser."""

from __future__ import annotations

import re

import pytest

from poggio.audit import Actor
from poggio.workspaces import create_user, create_workspace
from portal import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def app(instance, monkeypatch):
    monkeypatch.setattr("poggio.workspaces.BCRYPT_ROUNDS", 4)
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


CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" type="hidden" value="([^"]+)"')


class Browser:
    def __init__(self, client):
        self.client = client
        self.csrf = None

    def _remember(self, response):
        m = CSRF.search(response.get_data(as_text=True))
        if m:
            self.csrf = m.group(1) or m.group(2)
        return response

    def get(self, url, htmx=False, **kw):
        headers = {"HX-Request": "true"} if htmx else {}
        headers.update(kw.pop("headers", {}))
        return self._remember(self.client.get(url, headers=headers, **kw))

    def post(self, url, data=None, htmx=False, csrf=True, **kw):
        data = dict(data or {})
        headers = {"HX-Request": "true"} if htmx else {}
        if csrf:
            if htmx:
                headers["X-CSRFToken"] = self.csrf
            else:
                data.setdefault("csrf_token", self.csrf)
        headers.update(kw.pop("headers", {}))
        return self._remember(self.client.post(url, data=data, headers=headers, **kw))

    def sign_in(self, email, password=PASSWORD):
        self.get("/sign-in")
        return self.post("/sign-in", {"email": email, "password": password})


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def admin(browser):
    assert browser.sign_in("admin@acme.example").status_code == 302
    browser.get("/settings/mcp/")
    return browser
