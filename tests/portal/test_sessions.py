"""Portal sessions end on the server: signing out, a password change, removing or deactivating a user
end them everywhere, and idle and absolute lifetimes hold. A copy of the cookie opens nothing after."""

from __future__ import annotations

import datetime as dt

import pytest
from portal_client import PASSWORD, Browser

from poggio.identity.sessions import UserSession
from poggio.identity.workspaces import change_password, deactivate_user, remove_user
from poggio.records.audit import Actor
from poggio.storage.models import ApiToken, AuditEvent, Membership, User, Workspace


def _copy(browser: Browser, app) -> Browser:
    """A second browser holding a copy of ``browser``'s cookie (what a thief would have)."""
    thief = Browser(app.test_client())
    thief.client.set_cookie("session", browser.client.get_cookie("session").value)
    thief.csrf = browser.csrf
    return thief


def _age(field: str, by: dt.timedelta) -> None:
    """Move every session's ``field`` back by ``by``, as time passing would."""
    for row in UserSession.select():
        setattr(row, field, getattr(row, field) - by)
        row.save()


def _signed_in(b: Browser) -> bool:
    return b.get("/settings/mcp/").status_code == 200


def test_a_cookie_copied_before_sign_out_opens_nothing_after(admin, app):
    thief = _copy(admin, app)
    assert _signed_in(thief)
    assert admin.post("/sign-out").status_code == 302
    assert not _signed_in(thief)
    thief.post("/settings/mcp/tokens", {"name": "stolen", "expiry": "30"}, htmx=True)
    assert ApiToken.select().count() == 0
    assert UserSession.select().count() == 0


def test_only_a_digest_of_the_session_id_is_stored(admin, app):
    from flask.sessions import SecureCookieSessionInterface

    cookie = admin.client.get_cookie("session").value
    data = SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)
    stored = [s.digest for s in UserSession.select()]
    assert len(stored) == 1 and data["sid"] not in stored and len(stored[0]) == 64


@pytest.mark.parametrize("end", ["password", "remove", "deactivate"])
def test_password_change_and_removal_end_every_session(app, end):
    first, second = Browser(app.test_client()), Browser(app.test_client())
    for b in (first, second):
        assert b.sign_in("admin@acme.example").status_code == 302 and _signed_in(b)
    user = User.get(email="admin@acme.example")
    acme = Workspace.get(slug="acme")
    if end == "password":
        change_password(user, "a brand new password", Actor.cli())
    elif end == "remove":
        remove_user(user, acme, Actor.cli())
        assert not Membership.select().where(Membership.user == user).exists()
    else:
        deactivate_user(user, Actor.cli())
    assert not _signed_in(first) and not _signed_in(second)
    assert UserSession.select().count() == 0
    if end == "password":
        assert first.sign_in("admin@acme.example", PASSWORD).status_code == 401
        assert second.sign_in("admin@acme.example", "a brand new password").status_code == 302
    action = {"password": "user.password_changed", "remove": "user.removed", "deactivate": "user.deactivated"}[end]
    assert AuditEvent.select().where((AuditEvent.action == action) & (AuditEvent.workspace == acme)).exists()


def test_password_change_checks_the_new_password(app):
    from poggio.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        change_password(User.get(email="admin@acme.example"), "short", Actor.cli())
    assert err.value.field == "password"


def test_sessions_end_when_idle_and_at_their_absolute_lifetime(app):
    b = Browser(app.test_client())
    b.sign_in("admin@acme.example")
    assert _signed_in(b)
    _age("last_seen_at", dt.timedelta(hours=11, minutes=50))
    assert _signed_in(b)  # 12 h idle by default: still alive, and seen again now
    _age("last_seen_at", dt.timedelta(hours=12, minutes=1))
    assert not _signed_in(b)
    b.sign_in("admin@acme.example")
    _age("created_at", dt.timedelta(days=7, minutes=1))
    assert not _signed_in(b)  # 7 days at most, however active


def test_session_lifetimes_are_settings(instance, monkeypatch):
    from portal import create_app

    monkeypatch.setenv("POGGIO_SESSION_IDLE_HOURS", "1")
    monkeypatch.setenv("POGGIO_SESSION_MAX_DAYS", "2")
    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    from poggio.identity.workspaces import create_user, create_workspace

    acme = create_workspace("acme", "Acme", True, Actor.cli())
    create_user("admin@acme.example", PASSWORD, acme, "admin", Actor.cli())
    app = create_app()
    b = Browser(app.test_client())
    b.sign_in("admin@acme.example")
    assert _signed_in(b)
    _age("last_seen_at", dt.timedelta(minutes=61))
    assert not _signed_in(b)
    b.sign_in("admin@acme.example")
    _age("created_at", dt.timedelta(days=2, minutes=1))
    assert not _signed_in(b)


def test_a_remember_cookie_signs_nobody_in(app):
    """flask-login's remember cookie is never set; one made with the secret key opens nothing either."""
    from flask_login.utils import _cookie_digest

    b = Browser(app.test_client())
    r = b.sign_in("admin@acme.example")
    assert "remember_token" not in " ".join(r.headers.getlist("Set-Cookie"))
    user = User.get(email="admin@acme.example")
    with app.test_request_context():
        forged = f"{user.id}|{_cookie_digest(str(user.id))}"
    stranger = Browser(app.test_client())
    stranger.client.set_cookie("remember_token", forged)
    assert not _signed_in(stranger)
