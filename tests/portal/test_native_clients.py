"""Every client connects (RFC 8252 and the MCP authorization spec): what each real MCP client
registers, by dynamic registration and by a Client ID Metadata Document, driven through sign-in,
consent and the token endpoint with the redirect URI it really uses; and every redirect URI no
client may register, refused with ``invalid_redirect_uri``, a reason a person understands, nothing
stored and a line on the audit record.

The clients' facts are from /work/shared/CLIENTS.md (December 2026)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from oauth_support import MetadataDocumentServer, self_signed_certificate

from poggio.storage.models import AuditEvent, OAuthClient, OAuthCode, OAuthGrant, OAuthToken
from portal import client_metadata

MCP = "http://127.0.0.1:8001/mcp"


@dataclass(frozen=True)
class RealClient:
    name: str
    registers: list[str]  # its redirect_uris
    uses: str  # the redirect_uri of its authorization request
    application_type: str | None  # what it sends, if anything
    settled: str  # what Poggio stores


CLIENTS = [
    RealClient(
        "Claude.ai", ["https://claude.ai/api/mcp/auth_callback"], "https://claude.ai/api/mcp/auth_callback", None, "web"
    ),
    RealClient("Claude Code", ["http://localhost/callback"], "http://localhost:54121/callback", "native", "native"),
    RealClient(
        "ChatGPT",
        ["https://chatgpt.com/connector/oauth/a1b2c3d4"],
        "https://chatgpt.com/connector/oauth/a1b2c3d4",
        "web",
        "web",
    ),
    RealClient(
        "VS Code",
        ["https://vscode.dev/redirect", "http://127.0.0.1:33418/", "http://127.0.0.1/"],
        "http://127.0.0.1:33418/",
        "native",
        "native",
    ),
    RealClient(
        "VS Code, port 33418 busy",
        ["https://vscode.dev/redirect", "http://127.0.0.1:33418/", "http://127.0.0.1/"],
        "http://127.0.0.1:49152/",
        "native",
        "native",
    ),
    RealClient(
        "VS Code for the web",
        ["https://vscode.dev/redirect", "http://127.0.0.1:33418/"],
        "https://vscode.dev/redirect",
        "native",
        "native",
    ),
    RealClient(
        "Cursor",
        ["cursor://anysphere.cursor-mcp/oauth/callback"],
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "web",
        "native",
    ),  # sends web: corrected
    RealClient("Cursor, older", ["http://localhost:8787/callback"], "http://localhost:8787/callback", None, "native"),
    RealClient(
        "Goose", ["http://127.0.0.1:41213/oauth_callback"], "http://127.0.0.1:60001/oauth_callback", None, "native"
    ),
    RealClient("Zed", ["http://127.0.0.1:27523/callback"], "http://127.0.0.1:27523/callback", None, "native"),
    RealClient(
        "Zed, port-less loopback", ["http://127.0.0.1/callback"], "http://127.0.0.1:27523/callback", "native", "native"
    ),
    RealClient(
        "MCP Inspector",
        ["http://127.0.0.1:6276/oauth/callback"],
        "http://127.0.0.1:6276/oauth/callback",
        "native",
        "native",
    ),  # BaseOAuthClientProvider.clientMetadata in Inspector 2.12 sends native
    RealClient(
        "mcp-remote",
        ["http://localhost:3334/oauth/callback"],
        "http://localhost:5173/oauth/callback",
        "native",
        "native",
    ),  # 0.15.1: its bundled client 2.x derives native (resolveClientMetadata)
    RealClient(
        "Python SDK", ["http://[::1]:8765/callback"], "http://[::1]:9876/callback", "native", "native"
    ),  # mcp 2.3: OAuthClientMetadata.application_type defaults to native
    RealClient(
        "TypeScript SDK", ["http://127.0.0.1:49500/callback"], "http://127.0.0.1:49500/callback", "native", "native"
    ),  # the app's own metadata, as tests/clients/ts_sdk_oauth.mjs sends it
    RealClient(
        "A native app's private-use scheme",
        ["com.example.app:/callback"],
        "com.example.app:/callback",
        "native",
        "native",
    ),
]


@pytest.fixture(autouse=True)
def trusted_tls(tmp_path, monkeypatch):
    """Metadata documents served from 127.0.0.1 over TLS the portal trusts (as the e2e tests do)."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("POGGIO_OAUTH_METADATA_ALLOW_PRIVATE", "true")
    client_metadata.failures.clear()
    yield cert, key
    client_metadata.failures.clear()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(client_id: str, redirect_uri: str, challenge: str) -> str:
    return "/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": "st4te",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": MCP,
            "scope": "accounts:read",
        }
    )


def approve(admin, url: str):
    page = admin.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    text = page.get_data(as_text=True)
    fields = {
        "seal": re.search(r'name="seal" value="([^"]+)"', text).group(1),
        "workspace": re.search(r'name="workspace" value="(\d+)"', text).group(1),
    }
    return page, admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "90"})


def exchange(admin, client_id: str, code: str, verifier: str, redirect_uri: str):
    return admin.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": MCP,
        },
    )


def registration(real: RealClient) -> dict:
    body = {
        "client_name": real.name,
        "redirect_uris": real.registers,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    if real.application_type:
        body["application_type"] = real.application_type
    return body


@pytest.fixture(params=["dcr", "cimd"])
def registered(request, admin, trusted_tls):
    """A function that registers a client as it would: dynamic registration, or its metadata document."""
    servers = []

    def register(real: RealClient) -> str:
        body = registration(real)
        if request.param == "dcr":
            r = admin.client.post("/oauth/register", json=body)
            assert r.status_code == 201, r.get_json()
            assert r.get_json()["application_type"] == real.settled
            assert r.get_json()["redirect_uris"] == real.registers
            return r.get_json()["client_id"]
        server = MetadataDocumentServer(*trusted_tls, body)
        servers.append(server)
        return server.client_id

    yield register
    for server in servers:
        server.close()


@pytest.mark.parametrize("real", CLIENTS, ids=[c.name for c in CLIENTS])
def test_each_real_client_registers_and_connects(admin, registered, real):
    client_id = registered(real)
    verifier, challenge = pkce()
    url = authorize_url(client_id, real.uses, challenge)
    consent, answer = approve(admin, url)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    assert location.startswith(real.uses + "?"), location  # the very URI it asked for, port included
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["state"] == "st4te"
    row = OAuthClient.get(OAuthClient.client_id == client_id)
    assert row.application_type == real.settled
    assert json.loads(row.metadata)["redirect_uris"] == real.registers
    if urlsplit(real.uses).scheme not in ("http", "https"):  # the consent form may post on to the app's scheme
        assert f"form-action 'self' {urlsplit(real.uses).scheme}:" in consent.headers["Content-Security-Policy"]
    # the token endpoint wants the authorization request's redirect URI exactly, port and all
    other_port = _another_port(real.uses)
    if other_port is not None:
        refused = exchange(admin, client_id, params["code"], verifier, other_port)
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
        assert OAuthToken.select().count() == 0
        verifier_again, challenge = pkce()
        _, answer = approve(admin, authorize_url(client_id, real.uses, challenge))
        params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        verifier = verifier_again
    tokens = exchange(admin, client_id, params["code"], verifier, real.uses)
    assert tokens.status_code == 200, tokens.get_json()
    assert tokens.get_json()["access_token"].startswith("pgoa_")


def _another_port(uri: str) -> str | None:
    """The loopback ``uri`` on the next port (a port where it had none): None for other URIs."""
    parts = urlsplit(uri)
    if parts.scheme != "http":
        return None
    host = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return parts._replace(netloc=f"{host}:{(parts.port or 80) + 1}").geturl()


def _elsewhere(uri: str) -> list[str]:
    """Redirect URIs that differ from ``uri`` in something other than a loopback port: refused."""
    parts = urlsplit(uri)
    path = parts.path or "/"
    variants = [
        parts._replace(path=path.rstrip("/") + "/other").geturl(),
        parts._replace(query="next=elsewhere").geturl(),
        uri + "#fragment",
    ]
    if parts.scheme == "http":
        other_host = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
        variants += [
            uri.replace(parts.hostname, other_host, 1),
            uri.replace("http://", "https://", 1),
            uri.replace(parts.netloc, f"user@{parts.netloc}", 1),
        ]
    elif parts.scheme == "https":
        variants += [uri.replace(parts.hostname, "evil.example", 1), uri.replace("https://", "http://", 1)]
    else:
        variants += [uri.replace(parts.scheme, parts.scheme + "x", 1)]
    return variants


@pytest.mark.parametrize("real", CLIENTS, ids=[c.name for c in CLIENTS])
def test_a_redirect_uri_unlike_the_registered_ones_is_refused(admin, real):
    r = admin.client.post("/oauth/register", json=registration(real))
    client_id = r.get_json()["client_id"]
    for uri in _elsewhere(real.uses):
        _, challenge = pkce()
        answer = admin.get(authorize_url(client_id, uri, challenge))
        assert answer.status_code == 400 and "Location" not in answer.headers, uri
    assert OAuthCode.select().count() == 0


REFUSED = [
    ("javascript:alert(document.cookie)", "run script or read local data"),
    ("JavaScript://app.example/%0aalert(1)", "run script or read local data"),
    ("data:text/html,<script>alert(1)</script>", "run script or read local data"),
    ("file:///etc/passwd", "run script or read local data"),
    ("vbscript:msgbox(1)", "run script or read local data"),
    ("about:blank", "run script or read local data"),
    ("blob:https://app.example/5c1f", "run script or read local data"),
    ("https://app.example/cb#token", "has a fragment"),
    ("com.example.app:/callback#x", "has a fragment"),
    ("http://app.example/callback", "plain http is allowed only to a loopback address"),
    ("http://127.0.0.1.evil.example/callback", "plain http is allowed only to a loopback address"),
    ("http://127.0.0.1:9999/call\tback", "control character"),
    ("http://127.0.0.1:9999/callback ", "control character"),
    ("https://user:pw@app.example/cb", "carries credentials"),
    ("https:///cb", "has no host"),
    ("/callback", "is not an absolute URI"),
    ("com.example.app:", "has nothing after its scheme"),
    ("http://127.0.0.1:port/cb", "is not a valid URI"),
]


@pytest.mark.parametrize("uri, says", REFUSED, ids=[u for u, _ in REFUSED])
def test_unsafe_redirect_uris_are_refused_at_registration(client, uri, says):
    before = OAuthClient.select().count()
    r = client.post(
        "/oauth/register", json={"client_name": "Probe", "redirect_uris": [uri], "token_endpoint_auth_method": "none"}
    )
    body = r.get_json()
    assert r.status_code == 400 and body["error"] == "invalid_redirect_uri", body
    assert body["error_description"].startswith("redirect_uris: ") and says in body["error_description"], body
    assert OAuthClient.select().count() == before
    refused = AuditEvent.get(AuditEvent.action == "oauth.client_refused")
    assert refused.target == "Probe" and says in json.loads(refused.detail)["reason"]


@pytest.fixture
def client(app):
    return app.test_client()


def test_a_scheme_the_installation_denies_is_refused(instance, monkeypatch):
    monkeypatch.setenv("POGGIO_OAUTH_DENIED_REDIRECT_SCHEMES", "cursor, com.example.blocked")
    from portal import create_app

    test_client = create_app().test_client()
    for uri in ("cursor://anysphere.cursor-mcp/oauth/callback", "COM.EXAMPLE.BLOCKED:/cb"):
        r = test_client.post("/oauth/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
        assert r.status_code == 400 and r.get_json()["error"] == "invalid_redirect_uri"
        assert "POGGIO_OAUTH_DENIED_REDIRECT_SCHEMES" in r.get_json()["error_description"]
    assert OAuthClient.select().count() == 0
    allowed = test_client.post(
        "/oauth/register", json={"redirect_uris": ["com.example.app:/cb"], "token_endpoint_auth_method": "none"}
    )
    assert allowed.status_code == 201


@pytest.mark.parametrize(
    "sent, uris, settled",
    [
        (None, ["https://app.example/cb"], "web"),  # RFC 7591's default
        (None, ["http://127.0.0.1/cb"], "native"),
        ("web", ["cursor://anysphere.cursor-mcp/oauth/callback"], "native"),  # Cursor: corrected, not refused
        ("web", ["https://app.example/cb", "http://localhost:8000/cb"], "native"),
        ("native", ["https://vscode.dev/redirect"], "native"),  # a claimed https URL of a native app
    ],
)
def test_application_type_agrees_with_the_redirect_uris(client, sent, uris, settled):
    body = {"redirect_uris": uris, "token_endpoint_auth_method": "none", **({"application_type": sent} if sent else {})}
    r = client.post("/oauth/register", json=body)
    assert r.status_code == 201 and r.get_json()["application_type"] == settled
    row = OAuthClient.get(OAuthClient.client_id == r.get_json()["client_id"])
    assert row.application_type == settled == json.loads(row.metadata)["application_type"]
    event = AuditEvent.get(AuditEvent.action == "oauth.client_registered")
    assert json.loads(event.detail).get("application_type_sent") == (sent if sent != settled else None)


def test_a_metadata_document_with_an_unsafe_redirect_uri_is_refused_once(admin, trusted_tls):
    document = MetadataDocumentServer(
        *trusted_tls, {"client_name": "Sneaky", "redirect_uris": ["javascript:x"], "token_endpoint_auth_method": "none"}
    )
    try:
        _, challenge = pkce()
        for _ in range(2):
            r = admin.get(authorize_url(document.client_id, "javascript:x", challenge))
            page = r.get_data(as_text=True)
            assert r.status_code == 400 and "Location" not in r.headers
            assert "run script or read local data" in page
        assert document.requests == 1  # the failure is remembered: not fetched again
        assert OAuthClient.select().count() == 0 and OAuthGrant.select().count() == 0
        refused = AuditEvent.select().where(AuditEvent.action == "oauth.client_refused")
        assert refused.count() == 1 and refused.get().actor_label == "client metadata document"
    finally:
        document.close()


def test_a_metadata_url_longer_than_a_client_id_may_be_is_refused_before_any_fetch(admin, trusted_tls):
    document = MetadataDocumentServer(
        *trusted_tls, {"redirect_uris": ["http://127.0.0.1/callback"]}, path="/" + "x" * 600 + ".json"
    )
    try:
        _, challenge = pkce()
        r = admin.get(authorize_url(document.client_id, "http://127.0.0.1:5000/callback", challenge))
        assert r.status_code == 400 and "at most 500 characters" in r.get_data(as_text=True)
        assert document.requests == 0 and OAuthClient.select().count() == 0
    finally:
        document.close()


def test_chatgpt_by_metadata_document_with_private_key_jwt(admin, trusted_tls):
    """ChatGPT's preferred shape (CLIENTS.md): a Client ID Metadata Document for a web app with its
    https connector callback, ``token_endpoint_auth_method: private_key_jwt`` and a ``jwks_uri``;
    its token request is authenticated with an assertion it signs, and nothing else will do."""
    import time

    from joserfc import jwt
    from joserfc.jwk import KeySet, RSAKey

    from portal.client_auth import published

    published.clear()  # key sets kept by an earlier test's server on a port now reused
    key = RSAKey.generate_key(2048, parameters={"kid": "chatgpt-1", "use": "sig"})
    callback = "https://chatgpt.com/connector/oauth/a1b2c3d4"
    server = MetadataDocumentServer(
        *trusted_tls,
        {
            "client_name": "ChatGPT",
            "redirect_uris": [callback],
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
        },
        files={"/jwks.json": KeySet([key]).as_dict(private=False)},
    )
    server.document["jwks_uri"] = f"{server.origin}/jwks.json"
    try:
        verifier, challenge = pkce()
        _, answer = approve(admin, authorize_url(server.client_id, callback, challenge))
        assert answer.status_code == 302 and answer.headers["Location"].startswith(callback + "?")
        params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        assert params["iss"] and params["state"] == "st4te"
        row = OAuthClient.get(OAuthClient.client_id == server.client_id)
        assert row.kind == "metadata" and row.application_type == "web"
        assert json.loads(row.metadata)["token_endpoint_auth_method"] == "private_key_jwt"

        unsigned = exchange(admin, server.client_id, params["code"], verifier, callback)
        assert unsigned.status_code == 401 and unsigned.get_json()["error"] == "invalid_client"
        now = int(time.time())
        claims = {
            "iss": server.client_id,
            "sub": server.client_id,
            "aud": f"{params['iss']}/oauth/token",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        signed = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        tokens = admin.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "client_id": server.client_id,
                "redirect_uri": callback,
                "code_verifier": verifier,
                "resource": MCP,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signed,
            },
        )
        assert tokens.status_code == 200, tokens.get_json()
        assert tokens.get_json()["access_token"].startswith("pgoa_")
    finally:
        server.close()
