"""The portal as OAuth 2.1 authorization server, through Flask's test client against Authlib's real
endpoints and the real database: metadata, registration, consent, tokens, refusals.

Every refusal is checked for its RFC error and for what it must not leave behind: no code, no grant,
no token."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from poggio.audit import Actor
from poggio.db import utcnow
from poggio.models import AuditEvent, OAuthClient, OAuthCode, OAuthGrant, OAuthToken, Workspace
from poggio.oauth import OAuthService

MCP = "http://127.0.0.1:8001/mcp"
REDIRECT = "http://127.0.0.1:9999/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client, **extra) -> dict:
    body = {"client_name": "Claude", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], **extra}
    r = client.post("/oauth/register", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def authorize_url(client_id: str, challenge: str, **extra) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st4te",
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": MCP,
              "scope": "accounts:read contacts:read revenue:read", **extra}
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def consent_fields(page: str) -> dict:
    return {"seal": re.search(r'name="seal" value="([^"]+)"', page).group(1),
            "workspace": re.search(r'name="workspace" value="(\d+)"', page).group(1)}


def approve(browser, url: str, packs=("accounts", "contacts", "revenue"), lifetime="90"):
    page = browser.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    fields = consent_fields(page.get_data(as_text=True))
    return browser.post(url, {**fields, "decision": "approve", "packs": list(packs), "lifetime": lifetime})


def redirected(response) -> dict:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(REDIRECT), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(client, client_id: str, code: str, verifier: str, **extra):
    return client.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                             "redirect_uri": REDIRECT, "code_verifier": verifier, "resource": MCP,
                                             **extra})


@pytest.fixture
def app_client(admin):
    """An admin signed in, and a dynamically registered public client."""
    return admin, register(admin.client)


def full_flow(admin, client_id, packs=("accounts", "contacts", "revenue")):
    verifier, challenge = pkce()
    params = redirected(approve(admin, authorize_url(client_id, challenge), packs=packs))
    r = exchange(admin.client, client_id, params["code"], verifier)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# -- discovery ------------------------------------------------------------------------------------
def test_authorization_server_metadata(client):
    r = client.get("/.well-known/oauth-authorization-server", headers={"Origin": "https://claude.ai"})
    meta = r.get_json()
    assert r.status_code == 200 and meta["issuer"] == "http://127.0.0.1:8000"
    for key, path in (("authorization_endpoint", "/oauth/authorize"), ("token_endpoint", "/oauth/token"),
                      ("registration_endpoint", "/oauth/register"), ("revocation_endpoint", "/oauth/revoke")):
        assert meta[key] == "http://127.0.0.1:8000" + path
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["client_id_metadata_document_supported"] is True
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert meta["scopes_supported"] == ["accounts:read", "accounts:write", "contacts:read", "contacts:write",
                                      "revenue:read", "revenue:write"]
    assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/oauth/token", "/oauth/register",
                                  "/oauth/revoke"])
def test_cors_preflight_for_browser_clients(client, path):
    r = client.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in r.headers


@pytest.fixture
def client(app):
    return app.test_client()


# -- registration ----------------------------------------------------------------------------------
def test_dynamic_registration_public_and_confidential(client):
    public = register(client)
    assert public["client_id"].startswith("pgc_") and "client_secret" not in public
    confidential = register(client, token_endpoint_auth_method="client_secret_post")
    assert confidential["client_secret"].startswith("pgos_")
    row = OAuthClient.get(OAuthClient.client_id == confidential["client_id"])
    assert row.kind == "dynamic" and row.secret_digest != confidential["client_secret"]
    assert confidential["client_secret"] not in row.metadata


@pytest.mark.parametrize("uris, error", [
    (["http://evil.example/cb"], "invalid_redirect_uri"),
    (["https://app.example/cb#frag"], "invalid_redirect_uri"),
    (["javascript:alert(1)"], "invalid_redirect_uri"),
    ([], "invalid_redirect_uri"),
])
def test_registration_refuses_unsafe_redirect_uris(client, uris, error):
    before = OAuthClient.select().count()
    r = client.post("/oauth/register", json={"client_name": "x", "redirect_uris": uris,
                                             "token_endpoint_auth_method": "none"})
    assert r.status_code == 400 and r.get_json()["error"] in (error, "invalid_client_metadata")
    assert OAuthClient.select().count() == before


@pytest.mark.parametrize("extra, error, says", [
    ({"contacts": [f"c{i}@example.com" for i in range(60_000)]}, "invalid_client_metadata", "at most 16 KB"),
    ({"contacts": [f"c{i}@example.com" for i in range(6)]}, "invalid_client_metadata",
     "contacts: at most 5 entries (6 sent)"),
    ({"contacts": ["x" * 321]}, "invalid_client_metadata", "contacts: at most 320 characters (321 sent)"),
    ({"client_name": "x" * 201}, "invalid_client_metadata", "client_name: at most 200 characters (201 sent)"),
    ({"client_name": "Claude\nAdmin approved"}, "invalid_client_metadata", "client_name: holds a control character"),
    ({"logo_uri": "https://app.example/" + "x" * 2000}, "invalid_client_metadata", "logo_uri: at most 2,000"),
    ({"software_version": 3}, "invalid_client_metadata", "software_version: must be a string"),
    ({"grant_types": "authorization_code"}, "invalid_client_metadata", "grant_types: must be a list"),
    ({"scope": "accounts:read " * 100}, "invalid_client_metadata", "scope: at most 1,000 characters"),
    ({"application_type": "desktop"}, "invalid_client_metadata", "application_type: must be 'web' or 'native'"),
    ({"jwks": {"keys": [{"kty": "oct", "k": "x" * 9000}]}}, "invalid_client_metadata", "jwks: at most 8 KB"),
    ({"jwks": {"keys": [{"kty": "oct", "k": "x"}] * 11}}, "invalid_client_metadata", "jwks: at most 10 keys"),
    ({"redirect_uris": ["http://127.0.0.1:9999/call\tback"]}, "invalid_redirect_uri", "control character"),
    ({"redirect_uris": ["http://127.0.0.1:9999/callback\r\nSet-Cookie: x=1"]}, "invalid_redirect_uri",
     "control character"),
    ({"redirect_uris": [f"http://127.0.0.1:{9000 + i}/cb" for i in range(11)]}, "invalid_redirect_uri",
     "redirect_uris: at most 10 entries (11 sent)"),
    ({"redirect_uris": ["https://app.example/" + "x" * 2000]}, "invalid_redirect_uri", "at most 2,000 characters"),
])
def test_registration_bounds_every_field(client, extra, error, says):
    """Registration is open to anyone: every field has a bound, named in the refusal; nothing is
    stored, and the refusal is on record for the installation's admins."""
    before = OAuthClient.select().count()
    body = {"client_name": "Bounded", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", **extra}
    r = client.post("/oauth/register", json=body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == error and says in r.get_json()["error_description"], r.get_json()
    assert OAuthClient.select().count() == before
    if says != "at most 16 KB":  # a body too large is refused before it is read as metadata
        refused = AuditEvent.get(AuditEvent.action == "oauth.client_refused")
        assert refused.workspace_id is None and refused.actor_label == "dynamic registration"


def test_registration_keeps_only_the_fields_it_uses(client):
    reg = register(client, contacts=["ops@app.example"], software_id="app", extra_field="x" * 5000)
    stored = OAuthClient.get(OAuthClient.client_id == reg["client_id"]).metadata
    assert "extra_field" not in stored and "ops@app.example" in stored


def test_registration_refuses_client_credentials_and_non_json(client):
    r = client.post("/oauth/register", json={"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client_metadata"
    r = client.post("/oauth/register", data="redirect_uris=x")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_client_metadata"
    assert OAuthClient.select().count() == 0


def test_registration_is_rate_limited(instance, monkeypatch):
    monkeypatch.setenv("POGGIO_OAUTH_REGISTRATION_LIMIT", "3/hour")
    from portal import create_app

    test_client = create_app().test_client()
    codes = [test_client.post("/oauth/register", json={"redirect_uris": [REDIRECT]}).status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]


def test_registration_forgets_apps_never_used(app_client):
    """Registration is open to anyone: an app that never got an approval is forgotten after
    POGGIO_OAUTH_UNUSED_CLIENT_DAYS (the table cannot grow without end); an app with a grant, an
    app revoked by an admin (deleting it would lift the revocation) and a recent one are kept."""
    admin, used = app_client
    full_flow(admin, used["client_id"])
    unused, recent, revoked = (register(admin.client)["client_id"] for _ in range(3))
    old = utcnow() - dt.timedelta(days=8)
    # a client ID metadata document's app, first seen long ago and never approved: fetched anew if it comes back
    OAuthClient.create(client_id="https://app.example/client.json", kind="metadata", name="App", created_at=old)
    OAuthClient.update(created_at=old).where(OAuthClient.client_id.in_([used["client_id"], unused, revoked])).execute()
    OAuthClient.update(revoked_at=old).where(OAuthClient.client_id == revoked).execute()

    register(admin.client)  # a registration forgets the stale ones in its transaction

    left = {c.client_id for c in OAuthClient.select()}
    assert unused not in left and "https://app.example/client.json" not in left
    assert {used["client_id"], recent, revoked} <= left
    event = AuditEvent.get(AuditEvent.action == "oauth.unused_clients_forgotten")
    assert '"count": 2' in event.detail and event.workspace_id is None
    # the forgotten app is told so, and may register again (RFC 7591 clients do on invalid_client)
    _, challenge = pkce()
    r = admin.get(authorize_url(unused, challenge))
    assert r.status_code == 400 and "client" in r.get_data(as_text=True).lower()


def test_unused_app_window_is_a_setting(instance, monkeypatch):
    monkeypatch.setenv("POGGIO_OAUTH_UNUSED_CLIENT_DAYS", "1")
    from portal import create_app

    client = create_app().test_client()
    stale = register(client)["client_id"]
    OAuthClient.update(created_at=utcnow() - dt.timedelta(hours=25)).where(OAuthClient.client_id == stale).execute()
    register(client)
    assert not OAuthClient.select().where(OAuthClient.client_id == stale).exists()


# -- authorization and consent ---------------------------------------------------------------------
def test_authorize_signs_in_first(client):
    _, challenge = pkce()
    cid = register(client)["client_id"]
    r = client.get(authorize_url(cid, challenge))
    assert r.status_code == 302 and "/sign-in" in r.headers["Location"]
    assert "next=%2Foauth%2Fauthorize" in r.headers["Location"]


def test_consent_page_shows_app_workspace_packs_and_cannot_be_framed(app_client):
    admin, reg = app_client
    _, challenge = pkce()
    r = admin.get(authorize_url(reg["client_id"], challenge, scope="accounts:read"))
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Connect Claude to Poggio?" in page and "Unverified app" in page and "127.0.0.1:9999" in page
    assert "Acme Inc." in page and "Initrode" not in page  # only entitled workspaces the user administers
    assert 'value="accounts" checked' in page and 'value="revenue"' not in page
    assert r.headers["X-Frame-Options"] == "DENY"
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "form-action 'self' http://127.0.0.1:9999" in csp


def test_approve_exchange_refresh_rotate(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"], packs=("accounts", "revenue"))
    assert tokens["access_token"].startswith("pgoa_") and tokens["refresh_token"].startswith("pgor_")
    assert tokens["scope"] == "accounts:read revenue:read" and tokens["expires_in"] == 3600
    grant = OAuthGrant.get()
    assert grant.packs == "accounts,revenue" and grant.user.email == "admin@acme.example"
    assert grant.resource == MCP and grant.expires_at is not None
    # nothing of the secrets is stored
    row = OAuthToken.get()
    assert tokens["access_token"] not in (row.access_digest, row.refresh_digest)
    r = admin.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                                "client_id": reg["client_id"], "resource": MCP})
    fresh = r.get_json()
    assert r.status_code == 200 and fresh["refresh_token"] != tokens["refresh_token"]
    verified = OAuthService().verify_access(fresh["access_token"], MCP)
    assert verified.kind == "grant" and verified.packs == {"accounts", "revenue"}
    assert "oauth.approved" in [e.action for e in AuditEvent.select()]


def test_refresh_reuse_revokes_the_grant(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": reg["client_id"]}
    fresh = admin.client.post("/oauth/token", data=data).get_json()
    again = admin.client.post("/oauth/token", data=data)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.get().revoked_at is not None
    with pytest.raises(Exception, match="not valid"):
        OAuthService().verify_access(fresh["access_token"], MCP)
    refused = admin.client.post("/oauth/token", data={**data, "refresh_token": fresh["refresh_token"]})
    assert refused.get_json()["error"] == "invalid_grant"
    assert "oauth.refresh_reused" in [e.action for e in AuditEvent.select()]


def test_rows_no_longer_of_use_are_pruned(app, app_client):
    """Every refresh leaves a spent row and every client_credentials request a row: pruning keeps
    what can still let someone in or catch a replay, and nothing else (see OAuthService.prune)."""
    admin, reg = app_client
    first = full_flow(admin, reg["client_id"])
    data = {"grant_type": "refresh_token", "client_id": reg["client_id"]}
    second = admin.client.post("/oauth/token", data={**data, "refresh_token": first["refresh_token"]}).get_json()
    third = admin.client.post("/oauth/token", data={**data, "refresh_token": second["refresh_token"]}).get_json()
    live = OAuthGrant.get()
    other = register(admin.client)["client_id"]  # approved, then revoked by the admin
    full_flow(admin, other)
    revoked = OAuthGrant.get(OAuthGrant.id != live.id)
    OAuthService().revoke_grant(revoked, Actor.cli())
    idle = register(admin.client)["client_id"]  # approved, but the app never came for its code
    _, challenge = pkce()
    _code(admin, idle, challenge)
    robot = app.extensions["poggio"]["oauth"].create_confidential(Workspace.get(slug="acme"), "Robot", Actor.cli(),
                                                                 packs="accounts", resource=MCP)
    basic = base64.b64encode(f"{robot.client.client_id}:{robot.secret}".encode()).decode()
    for _ in range(3):
        assert admin.client.post("/oauth/token", data={"grant_type": "client_credentials", "resource": MCP},
                                 headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert (OAuthToken.select().count(), OAuthCode.select().count()) == (3 + 1 + 3, 3)
    service = OAuthService(spent_refresh_days=30)

    def rows_of(grant):
        return OAuthToken.select().where(OAuthToken.grant == grant).count()

    assert service.prune(utcnow() + dt.timedelta(hours=12)) == 0  # nothing has settled yet
    service.prune(utcnow() + dt.timedelta(days=2))
    assert OAuthCode.select().count() == 0  # a day past their five minutes
    assert rows_of(live) == 3  # spent refresh tokens are remembered, to catch a replay
    assert rows_of(revoked) == 0  # the grant stays, listed in Settings, without its tokens
    assert OAuthGrant.select().count() == 3
    assert rows_of(OAuthGrant.get(OAuthGrant.client == robot.client)) == 0  # nothing to refresh, nothing to catch
    service.prune(utcnow() + dt.timedelta(days=8))
    assert OAuthClient.get_or_none(OAuthClient.client_id == idle) is None  # its code gone, nothing holds it
    service.prune(utcnow() + dt.timedelta(days=31))
    assert rows_of(live) == 1  # the spent ones are forgotten: a replay is now refused as unknown...
    replay = admin.client.post("/oauth/token", data={**data, "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.get_by_id(live.id).revoked_at is None  # ...without revoking the grant
    fresh = admin.client.post("/oauth/token", data={**data, "refresh_token": third["refresh_token"]})
    assert fresh.status_code == 200  # the current refresh token still works
    assert OAuthService().verify_access(fresh.get_json()["access_token"], MCP).kind == "grant"
    service.prune(utcnow() + dt.timedelta(days=92))  # the 90 days approved are over
    assert rows_of(live) == 0


def _code(admin, client_id, challenge, **extra) -> str:
    return redirected(approve(admin, authorize_url(client_id, challenge, **extra)))["code"]


def test_wrong_pkce_verifier_is_refused(app_client):
    admin, reg = app_client
    _, challenge = pkce()
    r = exchange(admin.client, reg["client_id"], _code(admin, reg["client_id"], challenge), "x" * 50)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.select().count() == 0 and OAuthToken.select().count() == 0


def test_reused_code_is_refused_and_revokes_what_it_granted(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    code = _code(admin, reg["client_id"], challenge)
    first = exchange(admin.client, reg["client_id"], code, verifier)
    second = exchange(admin.client, reg["client_id"], code, verifier)
    assert first.status_code == 200
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.get().revoked_at is not None  # RFC 6749 §4.1.2: revoke what the code granted


def test_expired_code_is_refused(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    code = _code(admin, reg["client_id"], challenge)
    OAuthCode.update(expires_at=utcnow()).execute()
    r = exchange(admin.client, reg["client_id"], code, verifier)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.select().count() == 0


def test_redirect_uri_mismatch(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    # at the authorization endpoint: an error page, never a redirect to the unregistered URI
    r = admin.get(authorize_url(reg["client_id"], challenge, redirect_uri="http://127.0.0.1:9999/other"))
    assert r.status_code == 400 and "Location" not in r.headers
    # at the token endpoint: invalid_grant
    code = _code(admin, reg["client_id"], challenge)
    r = exchange(admin.client, reg["client_id"], code, verifier, redirect_uri="http://127.0.0.1:9999/other")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert OAuthToken.select().count() == 0


def test_unknown_client(app_client):
    admin, _ = app_client
    _, challenge = pkce()
    r = admin.get(authorize_url("pgc_nobody", challenge))
    assert r.status_code == 400 and "Location" not in r.headers
    r = exchange(admin.client, "pgc_nobody", "abc", "x" * 50)
    assert r.status_code in (400, 401) and r.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("extra, error", [
    ({"resource": "https://other.example/mcp"}, "invalid_target"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"scope": "accounts:delete"}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
def test_bad_authorization_requests_go_back_to_the_app_with_an_error(app_client, extra, error):
    admin, reg = app_client
    _, challenge = pkce()
    r = admin.get(authorize_url(reg["client_id"], challenge, **extra))
    params = redirected(r)
    assert params["error"] == error and params["state"] == "st4te"
    assert OAuthCode.select().count() == 0


def test_token_for_another_resource_is_refused_at_the_token_endpoint(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    code = _code(admin, reg["client_id"], challenge)
    r = exchange(admin.client, reg["client_id"], code, verifier, resource="https://other.example/mcp")
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_target"
    assert OAuthToken.select().count() == 0


def test_deny_redirects_access_denied_and_grants_nothing(app_client):
    admin, reg = app_client
    _, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    fields = consent_fields(admin.get(url).get_data(as_text=True))
    params = redirected(admin.post(url, {**fields, "decision": "deny"}))
    assert params == {"error": "access_denied", "state": "st4te", **({"error_description": params["error_description"]}
                                                                     if "error_description" in params else {})}
    assert OAuthCode.select().count() == 0 and OAuthGrant.select().count() == 0
    denied = AuditEvent.get(AuditEvent.action == "oauth.denied")
    assert denied.workspace.slug == "acme" and denied.target == "Claude"  # where acme's admins see it


@pytest.mark.parametrize("email", ["member@acme.example", "admin@initrode.example"])
def test_members_and_non_entitled_workspaces_cannot_approve(browser, email, client):
    reg = register(browser.client)
    _, challenge = pkce()
    assert browser.sign_in(email).status_code == 302
    url = authorize_url(reg["client_id"], challenge)
    page = browser.get(url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Only an administrator of a workspace with the MCP server" in text
    assert 'value="approve"' not in text
    seal = re.search(r'name="seal" value="([^"]+)"', text).group(1)
    # a forged approval (with any workspace id) is a denial, and grants nothing
    params = redirected(browser.post(url, {"seal": seal, "decision": "approve", "workspace": "1",
                                           "packs": ["accounts"], "lifetime": "90"}))
    assert params["error"] == "access_denied"
    assert OAuthCode.select().count() == 0 and OAuthGrant.select().count() == 0
    assert AuditEvent.get(AuditEvent.action == "oauth.denied").workspace is not None


def test_forged_state_or_tampered_request_is_refused(app_client):
    """The approval form is sealed to the request it was shown for: changing the state (or anything
    else in the request) between showing and approving is refused, and grants nothing."""
    admin, reg = app_client
    _, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    fields = consent_fields(admin.get(url).get_data(as_text=True))
    forged = url.replace("state=st4te", "state=forged")
    r = admin.post(forged, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "90"})
    assert r.status_code == 400 and "no longer valid" in r.get_data(as_text=True)
    r = admin.post(url, {"seal": "garbage", "workspace": fields["workspace"], "decision": "approve",
                         "packs": ["accounts"], "lifetime": "90"})
    assert r.status_code == 400
    assert OAuthCode.select().count() == 0


def test_consent_without_csrf_is_refused(app_client):
    admin, reg = app_client
    _, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    fields = consent_fields(admin.get(url).get_data(as_text=True))
    r = admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "90"}, csrf=False)
    assert r.status_code == 400 and OAuthCode.select().count() == 0


def test_narrowing_packs_and_lifetime_on_the_consent_page(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"], packs=("contacts",))
    assert tokens["scope"] == "contacts:read"
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    fields = consent_fields(admin.get(url).get_data(as_text=True))
    r = admin.post(url, {**fields, "decision": "approve", "lifetime": "90"})  # no pack chosen
    assert r.status_code == 422 and "Choose at least one tool pack" in r.get_data(as_text=True)
    params = redirected(admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "never"}))
    exchange(admin.client, reg["client_id"], params["code"], verifier)
    assert OAuthGrant.select().order_by(OAuthGrant.id.desc()).first().expires_at is None


# -- client credentials and revocation --------------------------------------------------------------
def test_client_credentials_for_an_admin_made_client(app, client):
    from poggio.audit import Actor
    from poggio.models import Workspace

    issued = app.extensions["poggio"]["oauth"].create_confidential(
        Workspace.get(slug="acme"), "Robot", Actor.cli(), packs="accounts", resource=MCP)
    basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", "resource": MCP},
                    headers={"Authorization": f"Basic {basic}"})
    body = r.get_json()
    assert r.status_code == 200 and body["scope"] == "accounts:read" and "refresh_token" not in body
    assert OAuthService().verify_access(body["access_token"], MCP).packs == {"accounts"}
    wrong = base64.b64encode(f"{issued.client.client_id}:pgos_wrong".encode()).decode()
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                    headers={"Authorization": f"Basic {wrong}"})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_client"
    # a confidential client cannot use the browser flow
    _, challenge = pkce()
    assert OAuthClient.get(OAuthClient.kind == "confidential").client_id == issued.client.client_id


def test_revocation_endpoint_ends_the_grant(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    r = admin.client.post("/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": reg["client_id"]})
    assert r.status_code == 200
    assert OAuthGrant.get().revoked_at is not None
    # unknown tokens are answered 200 too (RFC 7009 §2.2)
    assert admin.client.post("/oauth/revoke", data={"token": "nope", "client_id": reg["client_id"]}).status_code == 200


def test_connected_apps_listed_and_revoked_in_settings(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"], packs=("accounts",))
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert "Connected apps" in page and "Claude" in page and "admin@acme.example" in page
    grant = OAuthGrant.get()
    r = admin.post(f"/settings/mcp/apps/{grant.id}/revoke", htmx=True)
    assert r.status_code == 200 and "Disconnected" in r.get_data(as_text=True)
    with pytest.raises(Exception, match="not valid"):
        OAuthService().verify_access(tokens["access_token"], MCP)


def test_oauth_client_created_in_settings_shows_its_secret_once(admin):
    r = admin.post("/settings/mcp/clients", {"name": "Nightly sync", "packs": ["revenue"]}, htmx=True)
    page = r.get_data(as_text=True)
    secrets_shown = re.findall(r"pgos_[A-Za-z0-9]{33}", page)
    assert r.status_code == 201 and len(secrets_shown) == 1
    again = admin.get("/settings/mcp/").get_data(as_text=True)
    assert secrets_shown[0] not in again and "Nightly sync" in again
    r = admin.post("/settings/mcp/clients", {"name": ""}, htmx=True)
    assert r.status_code == 422 and "a name is required" in r.get_data(as_text=True)


# -- write scopes ---------------------------------------------------------------------------------------
def test_consent_offers_write_only_where_asked_with_a_warning(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="accounts:write contacts:read")
    page = admin.get(url).get_data(as_text=True)
    # offered where asked, never ticked in advance: read only unless the admin chooses write
    assert 'name="write" value="accounts"' in page and 'name="write" value="accounts" checked' not in page
    assert 'name="write" value="contacts"' not in page
    assert "This app asks to change data." in page and "(accounts:write)" in page
    fields = consent_fields(page)
    params = redirected(admin.post(url, {**fields, "decision": "approve", "packs": ["accounts", "contacts"],
                                         "write": ["accounts"], "lifetime": "90"}))
    tokens = exchange(admin.client, reg["client_id"], params["code"], verifier).get_json()
    assert tokens["scope"] == "accounts:write contacts:read"
    assert OAuthGrant.select().order_by(OAuthGrant.id.desc()).first().packs == "accounts:write,contacts"
    verified = OAuthService().verify_access(tokens["access_token"], MCP)
    assert verified.packs == {"accounts", "contacts"} and verified.writable == {"accounts"}


def test_consent_may_narrow_write_to_read_and_never_widen_read_to_write(app_client):
    admin, reg = app_client
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="accounts:write")
    page = admin.get(url).get_data(as_text=True)
    assert 'name="write" value="accounts" checked' not in page  # approving as it stands grants read
    fields = consent_fields(page)
    params = redirected(admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "90"}))
    assert exchange(admin.client, reg["client_id"], params["code"], verifier).get_json()["scope"] == "accounts:read"
    # an app that asked to read gets no write, whatever the form posted
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="contacts:read")
    page = admin.get(url).get_data(as_text=True)
    assert 'name="write"' not in page and "not change them" in page
    params = redirected(admin.post(url, {**consent_fields(page), "decision": "approve", "packs": ["contacts"],
                                         "write": ["contacts"], "lifetime": "90"}))
    assert exchange(admin.client, reg["client_id"], params["code"], verifier).get_json()["scope"] == "contacts:read"
    refused = admin.get(authorize_url(reg["client_id"], challenge, scope="accounts:delete"))
    assert refused.status_code == 302 and "invalid_scope" in refused.headers["Location"]


def test_client_credentials_with_write_scope(app, client):
    from poggio.audit import Actor
    from poggio.models import Workspace

    issued = app.extensions["poggio"]["oauth"].create_confidential(
        Workspace.get(slug="acme"), "Writer robot", Actor.cli(), packs="accounts:write,revenue", resource=MCP)
    assert issued.client.packs == "accounts:write,revenue"
    basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
    body = client.post("/oauth/token", data={"grant_type": "client_credentials", "resource": MCP},
                       headers={"Authorization": f"Basic {basic}"}).get_json()
    assert body["scope"] == "accounts:write revenue:read"
    verified = OAuthService().verify_access(body["access_token"], MCP)
    assert verified.packs == {"accounts", "revenue"} and verified.writable == {"accounts"}
