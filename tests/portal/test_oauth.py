"""The portal as OAuth 2.1 authorization server, through Flask's test client against Authlib's real
endpoints and the real database: metadata, registration, consent, tokens, refusals.

Every refusal is checked for its RFC error and for what it must not leave behind: no code, no grant,
no token."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from poggio.identity.oauth import OAuthService
from poggio.records.audit import Actor
from poggio.settings import SettingsError, load_settings
from poggio.storage.db import utcnow
from poggio.storage.models import AuditEvent, OAuthClient, OAuthCode, OAuthGrant, OAuthToken, Workspace

MCP = "http://127.0.0.1:8001/mcp"
ISSUER = "http://127.0.0.1:8000"
REDIRECT = "http://127.0.0.1:9999/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client, **extra) -> dict:
    body = {
        "client_name": "Claude",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        **extra,
    }
    r = client.post("/oauth/register", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def authorize_url(client_id: str, challenge: str, **extra) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": MCP,
        "scope": "accounts:read contacts:read revenue:read",
        **extra,
    }
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def consent_fields(page: str) -> dict:
    return {
        "seal": re.search(r'name="seal" value="([^"]+)"', page).group(1),
        "workspace": re.search(r'name="workspace" value="(\d+)"', page).group(1),
    }


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
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "resource": MCP,
            **extra,
        },
    )


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
    for key, path in (
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("registration_endpoint", "/oauth/register"),
        ("revocation_endpoint", "/oauth/revoke"),
    ):
        assert meta[key] == "http://127.0.0.1:8000" + path
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["authorization_response_iss_parameter_supported"] is True  # RFC 9207
    assert set(meta["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    }
    assert meta["authorization_grant_profiles_supported"] == ["urn:ietf:params:oauth:grant-profile:id-jag"]
    assert meta["scopes_supported"] == [
        "accounts:read",
        "accounts:write",
        "contacts:read",
        "contacts:write",
        "revenue:read",
        "revenue:write",
    ]
    assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/oauth/token", "/oauth/register", "/oauth/revoke"]
)
def test_cors_preflight_for_browser_clients(client, path):
    r = client.options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
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


@pytest.mark.parametrize(
    "uris, error",
    [
        (["http://evil.example/cb"], "invalid_redirect_uri"),
        (["https://app.example/cb#frag"], "invalid_redirect_uri"),
        (["javascript:alert(1)"], "invalid_redirect_uri"),
        ([], "invalid_redirect_uri"),
    ],
)
def test_registration_refuses_unsafe_redirect_uris(client, uris, error):
    before = OAuthClient.select().count()
    r = client.post(
        "/oauth/register", json={"client_name": "x", "redirect_uris": uris, "token_endpoint_auth_method": "none"}
    )
    assert r.status_code == 400 and r.get_json()["error"] in (error, "invalid_client_metadata")
    assert OAuthClient.select().count() == before


@pytest.mark.parametrize(
    "extra, error, says",
    [
        ({"contacts": [f"c{i}@example.com" for i in range(60_000)]}, "invalid_client_metadata", "at most 16 KB"),
        (
            {"contacts": [f"c{i}@example.com" for i in range(6)]},
            "invalid_client_metadata",
            "contacts: at most 5 entries (6 sent)",
        ),
        ({"contacts": ["x" * 321]}, "invalid_client_metadata", "contacts: at most 320 characters (321 sent)"),
        ({"client_name": "x" * 201}, "invalid_client_metadata", "client_name: at most 200 characters (201 sent)"),
        (
            {"client_name": "Claude\nAdmin approved"},
            "invalid_client_metadata",
            "client_name: holds a control character",
        ),
        ({"logo_uri": "https://app.example/" + "x" * 2000}, "invalid_client_metadata", "logo_uri: at most 2,000"),
        ({"software_version": 3}, "invalid_client_metadata", "software_version: must be a string"),
        ({"grant_types": "authorization_code"}, "invalid_client_metadata", "grant_types: must be a list"),
        ({"scope": "accounts:read " * 100}, "invalid_client_metadata", "scope: at most 1,000 characters"),
        ({"application_type": "desktop"}, "invalid_client_metadata", "application_type: must be 'web' or 'native'"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "x" * 9000}]}}, "invalid_client_metadata", "jwks: at most 8 KB"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "x"}] * 11}}, "invalid_client_metadata", "jwks: at most 10 keys"),
        ({"redirect_uris": ["http://127.0.0.1:9999/call\tback"]}, "invalid_redirect_uri", "control character"),
        (
            {"redirect_uris": ["http://127.0.0.1:9999/callback\r\nSet-Cookie: x=1"]},
            "invalid_redirect_uri",
            "control character",
        ),
        (
            {"redirect_uris": [f"http://127.0.0.1:{9000 + i}/cb" for i in range(11)]},
            "invalid_redirect_uri",
            "redirect_uris: at most 10 entries (11 sent)",
        ),
        ({"redirect_uris": ["https://app.example/" + "x" * 2000]}, "invalid_redirect_uri", "at most 2,000 characters"),
    ],
)
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
    r = admin.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": reg["client_id"],
            "resource": MCP,
        },
    )
    fresh = r.get_json()
    assert r.status_code == 200 and fresh["refresh_token"] != tokens["refresh_token"]
    verified = OAuthService().verify_access(fresh["access_token"], MCP)
    assert verified.kind == "grant" and verified.packs == {"accounts", "revenue"}
    assert "oauth.approved" in [e.action for e in AuditEvent.select()]


def past_the_grace(seconds: int = 11) -> None:
    """The spent refresh tokens as if spent ``seconds`` ago: past POGGIO_OAUTH_REFRESH_GRACE_SECONDS."""
    OAuthToken.update(refreshed_at=utcnow() - dt.timedelta(seconds=seconds)).where(
        OAuthToken.refreshed_at.is_null(False)
    ).execute()


def test_refresh_reuse_revokes_the_grant(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": reg["client_id"]}
    fresh = admin.client.post("/oauth/token", data=data).get_json()
    past_the_grace()
    again = admin.client.post("/oauth/token", data=data)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.get().revoked_at is not None
    with pytest.raises(Exception, match="not valid"):
        OAuthService().verify_access(fresh["access_token"], MCP)
    refused = admin.client.post("/oauth/token", data={**data, "refresh_token": fresh["refresh_token"]})
    assert refused.get_json()["error"] == "invalid_grant"
    assert "oauth.refresh_reused" in [e.action for e in AuditEvent.select()]


def refresh(client, client_id: str, refresh_token: str, **extra):
    return client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra},
    )


@pytest.mark.parametrize(
    "extra, error, said",
    [
        ({"scope": "accounts:write"}, "invalid_scope", "was granted 'accounts:read'"),  # more than was granted
        ({"resource": "https://other.example/mcp"}, "invalid_target", "not for https://other.example/mcp"),
    ],
)
def test_a_refused_refresh_does_not_spend_the_refresh_token(app_client, extra, error, said):
    """A refresh refused for its scope or its resource issues nothing and spends nothing: the app
    retries correctly and gets its new pair, not a revoked grant and a false refresh_reused."""
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"], packs=("accounts",))
    refused = refresh(admin.client, reg["client_id"], tokens["refresh_token"], **extra)
    assert refused.status_code == 400 and refused.get_json()["error"] == error
    assert said in refused.get_json()["error_description"]
    assert OAuthToken.select().count() == 1 and OAuthToken.get().refreshed_at is None
    retried = refresh(admin.client, reg["client_id"], tokens["refresh_token"], resource=MCP)
    assert retried.status_code == 200, retried.get_json()
    assert OAuthGrant.get().revoked_at is None
    assert OAuthService().verify_access(retried.get_json()["access_token"], MCP).kind == "grant"
    assert "oauth.refresh_reused" not in [e.action for e in AuditEvent.select()]


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
    robot = app.extensions["poggio"].oauth.create_confidential(
        Workspace.get(slug="acme"), "Robot", Actor.cli(), packs="accounts", resource=MCP
    )
    basic = base64.b64encode(f"{robot.client.client_id}:{robot.secret}".encode()).decode()
    for _ in range(3):
        assert (
            admin.client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "resource": MCP},
                headers={"Authorization": f"Basic {basic}"},
            ).status_code
            == 200
        )
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


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"scope": "accounts:delete"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_bad_authorization_requests_go_back_to_the_app_with_an_error(app_client, extra, error):
    admin, reg = app_client
    _, challenge = pkce()
    r = admin.get(authorize_url(reg["client_id"], challenge, **extra))
    params = redirected(r)
    assert params["error"] == error and params["state"] == "st4te"
    assert OAuthCode.select().count() == 0


@pytest.mark.parametrize(
    "extra, error",
    [
        ({}, None),  # approved: the code
        ({"decision": "deny"}, "access_denied"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"code_challenge": None}, "invalid_request"),
        ({"scope": "accounts:delete"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_every_authorization_response_names_the_issuer(app_client, extra, error):
    """RFC 9207: every redirect back to the app, the code and each error alike, carries ``iss`` (an
    app talking to several servers tells whose answer it holds: mix-up attacks)."""
    admin, reg = app_client
    _, challenge = pkce()
    decision = extra.pop("decision", "approve")
    url = authorize_url(reg["client_id"], challenge, **extra)
    if error in (None, "access_denied"):
        fields = consent_fields(admin.get(url).get_data(as_text=True))
        response = admin.post(url, {**fields, "decision": decision, "packs": ["accounts"], "lifetime": "90"})
    else:
        response = admin.get(url)
    params = redirected(response)
    assert params["iss"] == ISSUER and params["state"] == "st4te"
    assert params.get("error") == error and ("code" in params) == (error is None)
    # once only, and the sign-in redirect of the portal itself is left alone
    assert response.headers["Location"].count("iss=") == 1
    signed_out = admin.client.application.test_client().get(url)
    assert "/sign-in" in signed_out.headers["Location"] and "iss=" not in signed_out.headers["Location"]


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
    assert params == {
        "error": "access_denied",
        "state": "st4te",
        "iss": ISSUER,
        **({"error_description": params["error_description"]} if "error_description" in params else {}),
    }
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
    params = redirected(
        browser.post(
            url, {"seal": seal, "decision": "approve", "workspace": "1", "packs": ["accounts"], "lifetime": "90"}
        )
    )
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
    r = admin.post(
        url,
        {
            "seal": "garbage",
            "workspace": fields["workspace"],
            "decision": "approve",
            "packs": ["accounts"],
            "lifetime": "90",
        },
    )
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
    reg = register(admin.client)  # another app (the same one would be adding to its connection)
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
    from poggio.records.audit import Actor
    from poggio.storage.models import Workspace

    issued = app.extensions["poggio"].oauth.create_confidential(
        Workspace.get(slug="acme"), "Robot", Actor.cli(), packs="accounts", resource=MCP
    )
    basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": MCP},
        headers={"Authorization": f"Basic {basic}"},
    )
    body = r.get_json()
    assert r.status_code == 200 and body["scope"] == "accounts:read" and "refresh_token" not in body
    assert OAuthService().verify_access(body["access_token"], MCP).packs == {"accounts"}
    wrong = base64.b64encode(f"{issued.client.client_id}:pgos_wrong".encode()).decode()
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {wrong}"}
    )
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
    params = redirected(
        admin.post(
            url,
            {
                **fields,
                "decision": "approve",
                "packs": ["accounts", "contacts"],
                "write": ["accounts"],
                "lifetime": "90",
            },
        )
    )
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
    reg = register(admin.client)
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="contacts:read")
    page = admin.get(url).get_data(as_text=True)
    assert 'name="write"' not in page and "not change them" in page
    params = redirected(
        admin.post(
            url,
            {
                **consent_fields(page),
                "decision": "approve",
                "packs": ["contacts"],
                "write": ["contacts"],
                "lifetime": "90",
            },
        )
    )
    assert exchange(admin.client, reg["client_id"], params["code"], verifier).get_json()["scope"] == "contacts:read"
    refused = admin.get(authorize_url(reg["client_id"], challenge, scope="accounts:delete"))
    assert refused.status_code == 302 and "invalid_scope" in refused.headers["Location"]


def test_client_credentials_with_write_scope(app, client):
    from poggio.records.audit import Actor
    from poggio.storage.models import Workspace

    issued = app.extensions["poggio"].oauth.create_confidential(
        Workspace.get(slug="acme"), "Writer robot", Actor.cli(), packs="accounts:write,revenue", resource=MCP
    )
    assert issued.client.packs == "accounts:write,revenue"
    basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
    body = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": MCP},
        headers={"Authorization": f"Basic {basic}"},
    ).get_json()
    assert body["scope"] == "accounts:write revenue:read"
    verified = OAuthService().verify_access(body["access_token"], MCP)
    assert verified.packs == {"accounts", "revenue"} and verified.writable == {"accounts"}


# -- step-up: more scope for a connected app ------------------------------------------------------------
def test_step_up_adds_the_scope_to_the_same_connected_app(app_client):
    """After a 403 insufficient_scope the app authorizes again asking for what it has plus what it
    needs: the consent page shows what it has as granted and what it asks for as the addition, and
    the approval widens the same grant (one app in Connected apps, its expiry as approved before)."""
    admin, reg = app_client
    first = full_flow(admin, reg["client_id"], packs=("accounts",))
    grant = OAuthGrant.get()
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="accounts:read accounts:write revenue:read")
    page = admin.get(url).get_data(as_text=True)
    assert "Give Claude more access?" in page and "Already granted" in page
    assert "(accounts:read)" in page and "(accounts:read, already granted)" in page
    assert 'name="packs" value="accounts"' not in page  # granted: nothing to tick
    assert 'name="write" value="accounts"' in page and 'name="packs" value="revenue" checked' in page
    assert 'name="lifetime"' not in page  # the connection keeps its expiry
    params = redirected(
        admin.post(url, {**consent_fields(page), "decision": "approve", "write": ["accounts"], "packs": ["revenue"]})
    )
    tokens = exchange(admin.client, reg["client_id"], params["code"], verifier).get_json()
    assert tokens["scope"] == "accounts:write revenue:read"
    assert OAuthGrant.select().count() == 1
    widened = OAuthGrant.get()
    assert widened.id == grant.id and widened.packs == "accounts:write,revenue"
    assert widened.expires_at == grant.expires_at
    # the app's earlier token belongs to the same grant: it has the new scope too
    assert OAuthService().verify_access(first["access_token"], MCP).writable == {"accounts"}
    event = AuditEvent.get(AuditEvent.action == "oauth.scope_added")
    assert event.workspace.slug == "acme" and event.target == "Claude" and event.actor.email == "admin@acme.example"
    assert '"granted_before": "accounts"' in event.detail and '"granted_now": "accounts:write,revenue"' in event.detail
    listed = admin.get("/settings/mcp/").get_data(as_text=True)
    assert listed.count(f'id="app-{grant.id}"') == 1 and 'id="app-' + str(grant.id + 1) + '"' not in listed


def test_step_up_denied_or_overtaken_grants_nothing(app_client):
    admin, reg = app_client
    full_flow(admin, reg["client_id"], packs=("accounts",))
    grant = OAuthGrant.get()
    _, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="accounts:write")
    params = redirected(admin.post(url, {**consent_fields(admin.get(url).get_data(as_text=True)), "decision": "deny"}))
    assert params["error"] == "access_denied" and OAuthGrant.get().packs == "accounts"
    # approved, then the app is disconnected before it exchanges the code: nothing is granted
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge, scope="accounts:write")
    params = redirected(
        admin.post(
            url, {**consent_fields(admin.get(url).get_data(as_text=True)), "decision": "approve", "write": ["accounts"]}
        )
    )
    OAuthService().revoke_grant(grant, Actor.cli())
    r = exchange(admin.client, reg["client_id"], params["code"], verifier)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert "disconnected" in r.get_json()["error_description"]
    assert OAuthGrant.select().count() == 1 and OAuthGrant.get().packs == "accounts"
    assert OAuthToken.select().count() == 1
    assert not AuditEvent.select().where(AuditEvent.action == "oauth.scope_added").exists()


# -- Client ID Metadata Documents first ---------------------------------------------------------------
def configure(app, **changes):
    """Change the portal's settings in place (as a restart with other POGGIO_* values would)."""
    app.extensions["poggio"].settings = dataclasses.replace(app.extensions["poggio"].settings, **changes)


@pytest.fixture
def documents(app, tmp_path, monkeypatch):
    """Client ID Metadata Documents (and anything served beside them: a JWKS) over real TLS from
    127.0.0.1, a certificate the portal trusts, and a portal allowed to fetch from loopback."""
    from oauth_support import MetadataDocumentServer, self_signed_certificate

    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    configure(app, oauth_metadata_allow_private=True)
    servers = []

    def serve(name="Doc App", files=None, **document):
        server = MetadataDocumentServer(
            cert,
            key,
            {"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", **document},
            files=files,
        )
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.close()


def test_dynamic_registration_can_be_turned_off(app, admin, documents):
    """POGGIO_OAUTH_DYNAMIC_REGISTRATION=false: the metadata no longer offers registration, the
    endpoint is a 404 that says what to do instead, and apps connect by their metadata document."""
    configure(app, oauth_dynamic_registration=False)
    meta = admin.client.get("/.well-known/oauth-authorization-server").get_json()
    assert "registration_endpoint" not in meta and meta["client_id_metadata_document_supported"] is True
    r = admin.client.post("/oauth/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    assert "Client ID Metadata Document" in r.get_json()["error_description"]
    assert OAuthClient.select().count() == 0
    document = documents()
    verifier, challenge = pkce()
    params = redirected(approve(admin, authorize_url(document.client_id, challenge), packs=("accounts",)))
    assert exchange(admin.client, document.client_id, params["code"], verifier).status_code == 200


def test_dynamic_registration_setting_is_read_from_the_environment(instance):
    assert load_settings({**instance.env}).oauth_dynamic_registration is True
    assert (
        load_settings({**instance.env, "POGGIO_OAUTH_DYNAMIC_REGISTRATION": "false"}).oauth_dynamic_registration
        is False
    )
    trusted = load_settings(
        {
            **instance.env,
            "POGGIO_OAUTH_TRUSTED_CLIENT_METADATA": "https://claude.ai/oauth/claude-code-client-metadata, https://chatgpt.com/",
        }
    )
    assert trusted.oauth_trusted_client_metadata == (
        "https://claude.ai/oauth/claude-code-client-metadata",
        "https://chatgpt.com/",
    )
    for wrong in ("http://chatgpt.com/", "https://chatgpt.com", "chatgpt.com"):
        with pytest.raises(SettingsError, match="POGGIO_OAUTH_TRUSTED_CLIENT_METADATA"):
            load_settings({**instance.env, "POGGIO_OAUTH_TRUSTED_CLIENT_METADATA": wrong})


def test_metadata_documents_outside_the_trust_policy_are_refused(app, admin, documents):
    """POGGIO_OAUTH_TRUSTED_CLIENT_METADATA: only the listed documents (exact URLs, https://host/
    prefixes) may connect; another is refused before it is fetched, with a page that says why and
    an audit line, and an app connected before the policy is refused at the token endpoint."""
    listed, other = documents("Listed App"), documents("Other App")
    verifier, challenge = pkce()
    earlier = redirected(approve(admin, authorize_url(other.client_id, challenge), packs=("accounts",)))
    configure(app, oauth_trusted_client_metadata=(listed.client_id, "https://apps.example/"))
    r = admin.get(authorize_url(other.client_id, challenge))
    page = r.get_data(as_text=True)
    assert r.status_code == 403 and "Location" not in r.headers
    assert "not among the apps this installation allows" in page and other.client_id in page
    assert other.requests == 1  # fetched once, before the policy; not since
    event = AuditEvent.get(AuditEvent.action == "oauth.client_refused")
    assert event.target == other.client_id and event.actor.email == "admin@acme.example"
    assert event.workspace.slug == "acme"
    refused = exchange(admin.client, other.client_id, earlier["code"], verifier)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"
    assert "POGGIO_OAUTH_TRUSTED_CLIENT_METADATA" in refused.get_json()["error_description"]
    assert OAuthGrant.select().count() == 0
    # the listed one connects
    verifier, challenge = pkce()
    params = redirected(approve(admin, authorize_url(listed.client_id, challenge), packs=("accounts",)))
    assert exchange(admin.client, listed.client_id, params["code"], verifier).status_code == 200
    # a prefix allows every document under it, and nothing on another host that merely starts alike
    configure(app, oauth_trusted_client_metadata=(f"{listed.origin}/oauth/",))
    assert admin.get(authorize_url(listed.client_id, challenge)).status_code == 200
    configure(app, oauth_trusted_client_metadata=(f"{listed.origin}0/",))
    assert admin.get(authorize_url(listed.client_id, challenge)).status_code == 403


# -- private_key_jwt ---------------------------------------------------------------------------------
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(key, client_id: str, **claims) -> str:
    """A client assertion as an app signs it: iss = sub = its client_id, aud the token endpoint."""
    import time

    from joserfc import jwt

    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{ISSUER}/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        **claims,
    }
    alg = "RS256" if key.key_type == "RSA" else "ES256"
    return jwt.encode({"alg": alg, "kid": key.kid}, {k: v for k, v in body.items() if v is not None}, key)


def signed(key, client_id: str, **claims) -> dict:
    return {"client_assertion_type": ASSERTION, "client_assertion": assertion(key, client_id, **claims)}


@pytest.fixture
def key_pair():
    from joserfc.jwk import ECKey, KeySet, RSAKey

    from portal.client_auth import published

    published.clear()  # key sets kept by an earlier test's server on a port now reused
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    other = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # the same key id, another key
    return rsa, ec, other, lambda *keys: KeySet(list(keys)).as_dict(private=False)


def test_private_key_jwt_for_a_metadata_document_client(admin, documents, key_pair):
    """A metadata document client that publishes its keys (jwks_uri) authenticates its token
    requests with a JWT it signs: code exchange and refresh work with it, and nothing else does."""
    rsa, _, other, jwks = key_pair
    server = documents("Signing App", token_endpoint_auth_method="private_key_jwt", files={"/jwks.json": jwks(rsa)})
    server.document["jwks_uri"] = f"{server.origin}/jwks.json"
    cid = server.client_id
    meta = admin.client.get("/.well-known/oauth-authorization-server").get_json()
    assert (
        "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
        and "none" in meta["token_endpoint_auth_methods_supported"]
    )
    assert "RS256" in meta["token_endpoint_auth_signing_alg_values_supported"]
    verifier, challenge = pkce()
    code = redirected(approve(admin, authorize_url(cid, challenge), packs=("accounts",)))["code"]
    assert (
        json.loads(OAuthClient.get(OAuthClient.client_id == cid).metadata)["token_endpoint_auth_method"]
        == "private_key_jwt"
    )

    def refused(data, said):
        r = exchange(admin.client, cid, code, verifier, **data)
        assert r.status_code in (400, 401) and r.get_json()["error"] == "invalid_client", r.get_json()
        assert said in r.get_json()["error_description"], r.get_json()

    refused({}, "cannot authenticate")  # a public client's request: no assertion
    refused(signed(other, cid), "signature does not verify")
    refused(signed(rsa, cid, aud="https://elsewhere.example/token"), "aud")
    refused(signed(rsa, cid, iss="https://evil.example/client.json"), "Issuer and Subject MUST match")
    refused(signed(rsa, cid, exp=int(__import__("time").time()) + 3600), "valid for too long")
    refused(signed(rsa, cid, exp=int(__import__("time").time()) - 120), "exp")
    refused(signed(rsa, cid, jti=None), "Missing JWT ID")
    mixed = admin.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "https://other.example/client.json",
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            **signed(rsa, cid),
        },
    )
    assert mixed.get_json()["error"] == "invalid_client" and "another client" in mixed.get_json()["error_description"]
    once = signed(rsa, cid, jti="the-one")
    assert exchange(admin.client, cid, code, verifier, **once).status_code == 200  # the issuer as audience works too
    assert OAuthGrant.select().count() == 1
    refreshed = OAuthToken.get()
    tokens_ok = refresh(admin.client, cid, "pgor_unknown", **signed(rsa, cid, aud=ISSUER))
    assert tokens_ok.get_json()["error"] == "invalid_grant"  # authenticated; the token is the problem
    # the same assertion again is a replay, whatever the request
    r = refresh(admin.client, cid, "pgor_unknown", **once)
    assert r.get_json()["error"] == "invalid_client" and "used before" in r.get_json()["error_description"]
    assert server.fetched["/jwks.json"] == 1  # kept by its caching headers
    from poggio.storage.models import OAuthAssertion

    assert OAuthAssertion.select().count() == 2  # the jti seen, in the database: every worker agrees
    OAuthService().prune(utcnow() + dt.timedelta(minutes=10))
    assert OAuthAssertion.select().count() == 0  # expired: a replay is refused for its expiry anyway
    assert refreshed.refreshed_at is None and OAuthGrant.get().revoked_at is None


def test_private_key_jwt_with_inline_keys_refresh_and_rotation(admin, documents, key_pair, monkeypatch):
    rsa, ec, other, jwks = key_pair
    inline = documents("Inline Keys App", token_endpoint_auth_method="private_key_jwt", jwks=jwks(ec))
    verifier, challenge = pkce()
    code = redirected(approve(admin, authorize_url(inline.client_id, challenge), packs=("accounts",)))["code"]
    tokens = exchange(admin.client, inline.client_id, code, verifier, **signed(ec, inline.client_id)).get_json()
    fresh = refresh(admin.client, inline.client_id, tokens["refresh_token"], **signed(ec, inline.client_id))
    assert fresh.status_code == 200, fresh.get_json()
    without = refresh(admin.client, inline.client_id, fresh.get_json()["refresh_token"])
    assert without.status_code == 401 and without.get_json()["error"] == "invalid_client"
    assert OAuthService().verify_access(fresh.get_json()["access_token"], MCP).kind == "grant"
    # a published key set is fetched again when an assertion names a key id it lacks (rotation)
    monkeypatch.setattr("portal.client_auth.REFETCH_AFTER", dt.timedelta(0))
    server = documents("Rotating App", token_endpoint_auth_method="private_key_jwt", files={"/jwks.json": jwks(rsa)})
    server.document["jwks_uri"] = f"{server.origin}/jwks.json"
    verifier, challenge = pkce()
    code = redirected(approve(admin, authorize_url(server.client_id, challenge), packs=("accounts",)))["code"]
    r = exchange(admin.client, server.client_id, code, verifier, **signed(rsa, server.client_id))
    assert r.status_code == 200
    from joserfc.jwk import RSAKey

    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    server.files["/jwks.json"] = jwks(rotated)
    again = refresh(admin.client, server.client_id, r.get_json()["refresh_token"], **signed(rotated, server.client_id))
    assert again.status_code == 200 and server.fetched["/jwks.json"] == 2


def test_metadata_documents_with_private_key_jwt_must_publish_keys(admin, documents):
    document = documents("Keyless App", token_endpoint_auth_method="private_key_jwt")
    _, challenge = pkce()
    r = admin.get(authorize_url(document.client_id, challenge))
    assert r.status_code == 400 and "must publish its keys" in r.get_data(as_text=True)
    secret = documents("Secret App", token_endpoint_auth_method="client_secret_basic")
    r = admin.get(authorize_url(secret.client_id, challenge))
    assert r.status_code == 400 and "private_key_jwt" in r.get_data(as_text=True)
    assert OAuthClient.select().count() == 0


# -- refresh grace ---------------------------------------------------------------------------------------
def test_a_refresh_retried_within_the_grace_gets_the_same_pair(app_client):
    """The answer to a refresh can be lost (a dropped connection, a client killed mid-request): the
    app retries with the refresh token it still holds. Within POGGIO_OAUTH_REFRESH_GRACE_SECONDS it
    gets the very pair it missed, not a revoked grant; nothing new is issued, nothing on record."""
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    first = refresh(admin.client, reg["client_id"], tokens["refresh_token"], resource=MCP)
    again = refresh(admin.client, reg["client_id"], tokens["refresh_token"], resource=MCP)
    assert first.status_code == again.status_code == 200, again.get_json()
    lost, retried = first.get_json(), again.get_json()
    assert (retried["access_token"], retried["refresh_token"]) == (lost["access_token"], lost["refresh_token"])
    assert retried["scope"] == lost["scope"] and 0 < retried["expires_in"] <= lost["expires_in"]
    assert OAuthToken.select().count() == 2 and OAuthGrant.get().revoked_at is None
    assert "oauth.refresh_reused" not in [e.action for e in AuditEvent.select()]
    # at rest: digests, and the pair sealed with a key only the old refresh token gives
    spent = OAuthToken.get(OAuthToken.refreshed_at.is_null(False))
    assert lost["access_token"] not in (spent.grace_sealed or "") and lost["refresh_token"] not in spent.grace_sealed
    # the recovered pair is the live one: it works, and rotates on
    assert OAuthService().verify_access(retried["access_token"], MCP).kind == "grant"
    onwards = refresh(admin.client, reg["client_id"], retried["refresh_token"])
    assert onwards.status_code == 200
    # once the pair it sealed has itself been refreshed, the old token is plain reuse, grace or not
    late = refresh(admin.client, reg["client_id"], tokens["refresh_token"])
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    assert OAuthGrant.get().revoked_at is not None


def test_a_refresh_reused_after_the_grace_revokes_the_grant(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    fresh = refresh(admin.client, reg["client_id"], tokens["refresh_token"]).get_json()
    past_the_grace()
    late = refresh(admin.client, reg["client_id"], tokens["refresh_token"])
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    assert "already used" in late.get_json()["error_description"]
    assert OAuthGrant.get().revoked_at is not None
    assert "oauth.refresh_reused" in [e.action for e in AuditEvent.select()]
    with pytest.raises(Exception, match="not valid"):
        OAuthService().verify_access(fresh["access_token"], MCP)
    # what was sealed for the grace is gone once the grace is over
    OAuthService().prune()
    assert not OAuthToken.select().where(OAuthToken.grace_sealed.is_null(False)).exists()


def test_a_refresh_retried_within_the_grace_by_another_client_fails(app_client):
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    assert refresh(admin.client, reg["client_id"], tokens["refresh_token"]).status_code == 200
    thief = register(admin.client)["client_id"]
    stolen = refresh(admin.client, thief, tokens["refresh_token"])
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    assert "access_token" not in stolen.get_json()
    assert OAuthToken.select().count() == 2


def test_the_refresh_grace_is_a_setting(app, app_client):
    """POGGIO_OAUTH_REFRESH_GRACE_SECONDS=0: no grace, every second presentation is reuse."""
    admin, reg = app_client
    app.extensions["poggio"].oauth.refresh_grace_seconds = 0
    tokens = full_flow(admin, reg["client_id"])
    assert refresh(admin.client, reg["client_id"], tokens["refresh_token"]).status_code == 200
    again = refresh(admin.client, reg["client_id"], tokens["refresh_token"])
    assert again.status_code == 400 and OAuthGrant.get().revoked_at is not None


def test_two_refreshes_racing_with_one_token_get_one_pair(app, app_client):
    """Two requests with the same refresh token, both read before either spends it (two workers at
    once): the first spends it, the second finds it spent within the grace and answers its pair."""
    admin, reg = app_client
    tokens = full_flow(admin, reg["client_id"])
    service, client = app.extensions["poggio"].oauth, OAuthClient.get(OAuthClient.client_id == reg["client_id"])
    one, two = (service.find_refresh(tokens["refresh_token"], client) for _ in range(2))
    first, second = service.rotate(one, client), service.rotate(two, client)
    assert (first["access_token"], first["refresh_token"]) == (second["access_token"], second["refresh_token"])
    assert OAuthToken.select().count() == 2 and OAuthGrant.get().revoked_at is None


@pytest.mark.parametrize("part", ["header", "claims"])
def test_a_client_assertion_nested_too_deep_is_invalid_client_not_a_500(admin, part):
    """A forged client assertion whose header or claims nest arrays 100,000 deep: refused as any
    unreadable assertion is, before any client is looked up."""
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    deep = b"[" * 100_000 + b"]" * 100_000
    header = b'{"alg":"RS256","x":' + deep + b"}" if part == "header" else b'{"alg":"RS256"}'
    claims = b'{"sub":"x","x":' + deep + b"}" if part == "claims" else b'{"sub":"x"}'
    forged = f"{b64(header)}.{b64(claims)}.{b64(b'sig')}"
    r = admin.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "c",
            "client_id": "x",
            "client_assertion_type": ASSERTION,
            "client_assertion": forged,
        },
    )
    assert r.status_code in (400, 401), r.status_code
    assert r.get_json()["error"] == "invalid_client", r.get_json()
