"""Sign-in throttling: counted atomically in the database (shared by every worker and host), per
account and client pair and per client, backing off rather than locking, so a stranger cannot lock an
admin out. The race is checked against a real multi-worker gunicorn portal."""

from __future__ import annotations

import datetime as dt
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from instances import BACKENDS, PortalProcess, drop_instance, make_instance
from portal_client import PASSWORD, Browser

from poggio.identity.sessions import SignInThrottle
from poggio.storage.db import database
from poggio.storage.models import AuditEvent


def _from(app, ip: str) -> Browser:
    b = Browser(app.test_client())
    b.client.environ_base["REMOTE_ADDR"] = ip
    return b


def test_a_stranger_cannot_lock_the_admin_out(app):
    stranger = _from(app, "203.0.113.5")
    answers = [stranger.sign_in("admin@acme.example", f"guess {i}").status_code for i in range(30)]
    assert answers.count(401) == 5 and answers.count(429) == 25
    assert _from(app, "198.51.100.7").sign_in("admin@acme.example").status_code == 302
    assert stranger.sign_in("admin@acme.example").status_code == 429  # the stranger still waits


def test_waits_grow_and_end(app):
    b = _from(app, "203.0.113.5")
    for _ in range(5):
        b.sign_in("admin@acme.example", "wrong password")
    r = b.sign_in("admin@acme.example", "wrong password")
    assert r.status_code == 429 and "Try again in" in r.get_data(as_text=True)
    first_wait = SignInThrottle.get(SignInThrottle.key.startswith("pair:")).blocked_until
    SignInThrottle.update(blocked_until=dt.datetime(2000, 1, 1)).execute()  # the wait is over
    assert b.sign_in("admin@acme.example", "wrong password").status_code == 401  # one more try, not a lock
    second = SignInThrottle.get(SignInThrottle.key.startswith("pair:")).blocked_until
    assert second - dt.datetime.utcnow() > first_wait - dt.datetime.utcnow()  # and a longer wait after it
    SignInThrottle.update(blocked_until=dt.datetime(2000, 1, 1)).execute()
    assert b.sign_in("admin@acme.example").status_code == 302
    assert not SignInThrottle.select().where(SignInThrottle.key.startswith("pair:")).exists()


def test_one_client_guessing_many_accounts_is_slowed(app):
    b = _from(app, "203.0.113.9")
    answers = [b.sign_in(f"user{i}@acme.example", "wrong password").status_code for i in range(25)]
    assert answers.count(401) == 20 and answers.count(429) == 5


# -- a real portal with several gunicorn workers -----------------------------------------------------
@pytest.fixture(params=BACKENDS)
def portal_server(request, tmp_path, monkeypatch):
    from poggio.identity.workspaces import create_user, create_workspace
    from poggio.records.audit import Actor
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade

    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    inst = make_instance(tmp_path / request.param, request.param)
    db = inst.activate()
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            create_user(
                "admin@acme.example",
                PASSWORD,
                create_workspace("acme", "Acme", True, Actor.cli()),
                "admin",
                Actor.cli(),
            )
        portal = PortalProcess(inst, workers=4)
        time.sleep(1)  # every worker up
        yield portal.url
        portal.stop()
    finally:
        drop_instance(inst)


def _attempt(base: str, password: str) -> int:
    with httpx.Client(base_url=base, timeout=60) as client:
        page = client.get("/sign-in").text
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        return client.post(
            "/sign-in", data={"csrf_token": csrf, "email": "admin@acme.example", "password": password}
        ).status_code


def test_a_burst_against_several_workers_tries_five_passwords(portal_server):
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda i: _attempt(portal_server, f"guess {i}"), range(40)))
    assert answers.count(401) == 5 and answers.count(429) == 35, answers
    with database.connection_context():
        assert AuditEvent.select().where(AuditEvent.action == "user.sign_in_failed").count() == 5
    answers = [_attempt(portal_server, "wrong again") for _ in range(14)]
    assert answers.count(429) == 14
