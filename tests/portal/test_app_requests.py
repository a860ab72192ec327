"""Admins decide which apps and who may ask, in the portal: the consent page of a member (a request),
Settings > MCP Server's Requests (approve, deny; HTMX partials and plain forms) and App policy, a
member's own page, the listed-apps policy at the consent page, and how an app is identified."""

from __future__ import annotations

import re

from test_oauth import approve, authorize_url, exchange, pkce, redirected, register

from poggio.identity import app_access
from poggio.identity.oauth import OAuthService
from poggio.records.audit import Actor
from poggio.storage.models import AuditEvent, OAuthCode, OAuthGrant, Workspace

CLI = Actor.cli()


def acme() -> Workspace:
    return Workspace.get(Workspace.slug == "acme")


def actions() -> list[str]:
    return [e.action for e in AuditEvent.select().where(AuditEvent.workspace == acme().id).order_by(AuditEvent.id)]


def request_as(browser, email: str, name: str = "Claude") -> tuple[dict, dict]:
    """``email`` signs in, asks for a registered app; returns its registration and the token response."""
    reg = register(browser.client, client_name=name)
    verifier, challenge = pkce()
    assert browser.sign_in(email).status_code == 302
    url = authorize_url(reg["client_id"], challenge)
    page = browser.get(url).get_data(as_text=True)
    assert "Request access" in page and "needs an administrator" in page, page
    params = redirected(approve(browser, url, packs=("accounts",)))
    r = exchange(browser.client, reg["client_id"], params["code"], verifier)
    assert r.status_code == 200, r.get_json()
    return reg, r.get_json()


def verdict(token: str) -> str | None:
    from poggio.identity.tokens import TokenRejected

    try:
        OAuthService().verify_access(token, "http://127.0.0.1:8001/mcp")
    except TokenRejected as exc:
        return exc.reason
    return None


def test_a_members_request_is_approved_in_settings(app, browser):
    app_access.set_app_policy(acme(), CLI, access="members")
    reg, tokens = request_as(browser, "member@acme.example")
    assert verdict(tokens["access_token"]) == "approval_pending"
    assert "oauth.requested" in actions()
    mine = browser.get("/my/apps/").get_data(as_text=True)
    assert "Waiting for approval" in mine and "Claude" in mine
    assert browser.get("/settings/mcp/").status_code == 403  # a member does not decide
    grant = OAuthGrant.get(OAuthGrant.approval == "pending")
    assert browser.post(f"/settings/mcp/requests/{grant.id}/approve").status_code == 403

    admin = type(browser)(app.test_client())
    assert admin.sign_in("admin@acme.example").status_code == 302
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert 'id="app-requests"' in page and "member@acme.example" in page and "Waiting for approval" in page
    assert "self-asserted" in page and "well-known" in page  # a DCR app named Claude
    # without the CSRF token nothing is decided
    assert admin.post(f"/settings/mcp/requests/{grant.id}/approve", csrf=False).status_code == 400
    assert verdict(tokens["access_token"]) == "approval_pending"
    r = admin.post(f"/settings/mcp/requests/{grant.id}/approve", htmx=True)
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and body.startswith('<section class="card" id="app-requests"')
    assert "No pending requests." in body and 'hx-swap-oob="true"' in body  # and the connected apps, out of band
    assert verdict(tokens["access_token"]) is None
    assert "oauth.request_approved" in actions()
    assert "Approved" in browser.get("/my/apps/").get_data(as_text=True)
    again = admin.post(f"/settings/mcp/requests/{grant.id}/deny", htmx=True)
    assert again.status_code == 409 and "already decided" in again.get_data(as_text=True)
    assert verdict(tokens["access_token"]) is None


def test_deny_without_javascript_ends_the_grant(app, browser):
    app_access.set_app_policy(acme(), CLI, access="members")
    _, tokens = request_as(browser, "member@acme.example")
    grant = OAuthGrant.get(OAuthGrant.approval == "pending")
    admin = type(browser)(app.test_client())
    admin.sign_in("admin@acme.example")
    admin.get("/settings/mcp/")
    r = admin.post(f"/settings/mcp/requests/{grant.id}/deny")
    assert r.status_code == 302 and r.headers["Location"].endswith("/settings/mcp/#app-requests")
    assert verdict(tokens["access_token"]) == "invalid"
    assert "Denied" in browser.get("/my/apps/").get_data(as_text=True)
    assert "oauth.request_denied" in actions()
    assert admin.post("/settings/mcp/requests/99999/approve").status_code == 404


def test_a_member_withdraws_their_own_request(browser):
    app_access.set_app_policy(acme(), CLI, access="members")
    _, tokens = request_as(browser, "member@acme.example")
    grant = OAuthGrant.get(OAuthGrant.approval == "pending")
    browser.get("/my/apps/")
    assert browser.post(f"/my/apps/{grant.id}/disconnect").status_code == 302
    assert verdict(tokens["access_token"]) == "invalid"


def test_members_cannot_ask_when_only_admins_connect_apps(browser):
    reg = register(browser.client)
    _, challenge = pkce()
    browser.sign_in("member@acme.example")
    text = browser.get(authorize_url(reg["client_id"], challenge)).get_data(as_text=True)
    assert "Only an administrator" in text and "Request access" not in text


def test_the_listed_apps_policy_refuses_an_unlisted_app_at_the_consent_page(admin):
    listed = register(admin.client, client_name="Listed")
    unlisted = register(admin.client, client_name="Unlisted")
    app_access.set_app_policy(acme(), CLI, apps="listed", allowed=[listed["client_id"]])
    _, challenge = pkce()
    params = redirected(admin.get(authorize_url(unlisted["client_id"], challenge)))
    assert params["error"] == "access_denied" and "allow only the apps they listed" in params["error_description"]
    assert params["state"] == "st4te"
    event = AuditEvent.get(AuditEvent.action == "oauth.refused_by_policy")
    assert event.workspace_id == acme().id and unlisted["client_id"] in event.detail
    assert OAuthCode.select().count() == 0 and OAuthGrant.select().count() == 0
    page = admin.get(authorize_url(listed["client_id"], challenge))
    assert page.status_code == 200 and 'value="approve"' in page.get_data(as_text=True)


def test_app_policy_form(admin):
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert 'id="app-policy"' in page and "any app may connect" in page
    bad = admin.post("/settings/mcp/app-policy", {"apps": "listed", "allowed": "Claude\n", "access": "members"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "cannot be listed" in text and 'class="field-error"' in text
    assert app_access.AppPolicy.of(acme()) == app_access.AppPolicy("any", (), "admins")
    assert (
        admin.post("/settings/mcp/app-policy", {"apps": "listed", "allowed": "", "access": "admins"}).status_code == 422
    )
    ok = admin.post(
        "/settings/mcp/app-policy",
        {"apps": "listed", "allowed": "https://claude.ai/\r\npgc_abcdefghijkl", "access": "members"},
    )
    assert ok.status_code == 200 and "App policy saved." in ok.get_data(as_text=True)
    assert app_access.AppPolicy.of(acme()) == app_access.AppPolicy(
        "listed", ("https://claude.ai/", "pgc_abcdefghijkl"), "members"
    )
    assert admin.post("/settings/mcp/app-policy", {"apps": "any", "access": "admins"}, csrf=False).status_code == 400


def test_consent_shows_how_the_app_is_identified(admin):
    reg = register(admin.client, client_name="ChatGPT")
    _, challenge = pkce()
    text = admin.get(authorize_url(reg["client_id"], challenge)).get_data(as_text=True)
    assert "Unverified app" in text and "self-asserted" in text and "well-known app" in text
    plain = register(admin.client, client_name="Nightly sync")
    text = admin.get(authorize_url(plain["client_id"], challenge)).get_data(as_text=True)
    assert "self-asserted" in text and "well-known app" not in text
    assert re.search(r"Connect Nightly sync", text)


def test_connected_apps_show_how_each_app_is_identified(admin):
    from poggio.storage.db import utcnow
    from poggio.storage.models import User

    service = OAuthService()
    boss = User.get(User.email == "admin@acme.example")
    document = service.remember_metadata_client(
        "https://claude.ai/oauth/mcp.json",
        {"client_name": "Claude", "redirect_uris": ["https://claude.ai/cb"]},
        utcnow(),
    )
    dynamic = service.register({"client_name": "Cursor", "redirect_uris": ["http://127.0.0.1:5/cb"]}).client
    for client in (document, dynamic):
        OAuthGrant.create(workspace=acme(), client=client, user=boss, packs="accounts", resource="http://x/mcp")
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert "verified: claude.ai" in page and "https://claude.ai/oauth/mcp.json" in page
    assert "self-asserted name (unverified app)" in page and "Claims a well-known name" in page
