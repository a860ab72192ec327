"""OAuth 2.1 end to end, as an MCP client lives it: the official Python SDK's OAuth client
(``mcp.client.auth.OAuthClientProvider``) against a real portal (the authorization server) and a
real MCP server (the resource server) on one database, the person in Debian's Chromium signing in
and approving on the real consent page; Client ID Metadata Documents served over real TLS; an
admin's ``client_credentials`` client. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import httpx2
import pytest
from helpers import Mcp
from instances import ROOT
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth_support import (
    ALL_TOOLS,
    FormPerson,
    MetadataDocumentServer,
    OAuthStack,
    RedirectListener,
    chromium,
    disconnect_in_settings,
    oauth_stack,
    sign_in_and_approve,
)

from poggio.security.token_format import generate
from poggio.storage.db import utcnow
from poggio.storage.models import AuditEvent, OAuthClient, OAuthGrant
from poggio.storage.models import OAuthToken as OAuthTokenRow

ACCESS_SECONDS = 6  # short, so the SDK's own refresh is seen within the test
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    with oauth_stack(
        tmp_path_factory.mktemp(f"oauth-{request.param}"), request.param, access_token_seconds=ACCESS_SECONDS
    ) as s:
        yield s


# -- the SDK's side ---------------------------------------------------------------------------
class MemoryStorage:
    """The SDK's TokenStorage, in memory; keeps every token set it was given."""

    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Reauthorization(Exception):
    """The SDK sent its person to the authorization page again (after a revocation)."""


class Person:
    """The person at the browser: each authorization URL the SDK hands over is opened in Chromium,
    where they sign in (the first time) and approve; the redirect lands on the app's listener.
    With ``approving=False`` a further authorization URL is recorded and refused."""

    def __init__(self, stack: OAuthStack, browser, listener: RedirectListener, screenshot: str | None = None):
        self.stack, self.browser, self.listener, self.screenshot = stack, browser, listener, screenshot
        self.urls: list[str] = []
        self.approving = True
        self.consent_text = ""

    async def redirect_handler(self, url: str) -> None:
        self.urls.append(url)
        if not self.approving:
            raise Reauthorization(url)
        self.consent_text, landed = await sign_in_and_approve(self.browser, self.stack, url, self.screenshot)
        assert "You can close this window" in landed  # the listener's page: the redirect arrived

    async def callback_handler(self) -> AuthorizationCodeResult:
        got = await anyio.to_thread.run_sync(self.listener.wait)
        assert "error" not in got, got
        return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got.get("iss"))


def _provider(
    stack: OAuthStack,
    person: Person,
    storage: MemoryStorage,
    listener: RedirectListener,
    client_metadata_url: str | None = None,
    **metadata,
) -> OAuthClientProvider:
    return OAuthClientProvider(
        stack.mcp_url,
        OAuthClientMetadata(redirect_uris=[listener.uri], client_name="Poggio e2e (Python SDK)", **metadata),
        storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
        client_metadata_url=client_metadata_url,
    )


async def _tools_and_account(http: httpx2.AsyncClient, url: str) -> tuple[set[str], dict]:
    async with Client(streamable_http_client(url, http_client=http)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        account = await client.call_tool("get_account", {"domain": "example.com"})
        assert not account.is_error, account
        return names, account.structured_content


def _token_request(
    stack: OAuthStack,
    data: dict,
    client: OAuthClientInformationFull | None = None,
    basic: tuple[str, str] | None = None,
) -> httpx.Response:
    headers = {}
    if client is not None and client.client_secret:
        basic = (client.client_id, client.client_secret)
    elif client is not None:
        data = {**data, "client_id": client.client_id}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    return httpx.post(f"{stack.portal.url}/oauth/token", data=data, headers=headers, timeout=10)


def _bearer_post(stack: OAuthStack, token: str) -> httpx.Response:
    """One raw MCP request with a bearer token (what any client's first request looks like)."""
    return httpx.post(
        stack.mcp_url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        timeout=10,
    )


def _grant_of(client_id: str) -> OAuthGrant:
    return (
        OAuthGrant.select()
        .join(OAuthClient)
        .where(OAuthClient.client_id == client_id)
        .order_by(OAuthGrant.id.desc())
        .first()
    )


# -- 1. the whole flow with the SDK ------------------------------------------------------------
@pytest.mark.browser
def test_python_sdk_connects_through_oauth_and_loses_access_when_revoked(stack):
    """Discovery -> dynamic registration -> sign-in and consent in Chromium -> code + PKCE -> token
    -> tools/list and get_account -> the SDK refreshes the expired access token by itself (rotation)
    -> the admin revokes the connected app -> the very next MCP request is a 401 and the SDK goes
    back to the authorization page."""
    listener = RedirectListener()
    storage = MemoryStorage()
    seen: list[tuple[str, str, int]] = []

    async def note(response):
        seen.append((response.request.method, str(response.request.url), response.status_code))

    async def main():
        async with chromium() as browser:
            person = Person(stack, browser, listener, screenshot=f"oauth-consent-{stack.instance.backend}.png")
            auth = _provider(stack, person, storage, listener)
            async with httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"response": [note]}) as http:
                names, account = await _tools_and_account(http, stack.mcp_url)
                assert names == ALL_TOOLS
                assert account["account"]["name"] == "Example Corp"
                assert len(person.urls) == 1
                first = storage.tokens

                # The access token expires; the SDK refreshes it before its next request.
                await anyio.sleep(ACCESS_SECONDS + 1)
                names, _ = await _tools_and_account(http, stack.mcp_url)
                assert names == ALL_TOOLS and len(person.urls) == 1  # no new sign-in
                second = storage.tokens
                assert second.access_token != first.access_token
                assert second.refresh_token and second.refresh_token != first.refresh_token  # rotated

                # The admin disconnects the app in Settings > MCP Server.
                grant = _grant_of(storage.client.client_id)
                row = await disconnect_in_settings(
                    browser, stack, grant.id, screenshot=f"oauth-connected-apps-{stack.instance.backend}.png"
                )
                assert "Poggio e2e (Python SDK)" in row and "revoked" in row
                person.approving = False
                with pytest.RaisesGroup(Reauthorization, allow_unwrapped=True, flatten_subgroups=True):
                    await _tools_and_account(http, stack.mcp_url)
                return person, first, second

    try:
        person, first, second = anyio.run(main)
    finally:
        listener.close()
    portal, mcp = stack.portal.url, stack.mcp_url

    # Discovery and registration happened as the MCP authorization spec describes, in order.
    calls = [(m, u.split("?")[0], s) for m, u, s in seen]
    prm = ("GET", f"{stack.mcp.url}/.well-known/oauth-protected-resource/mcp", 200)
    asm = ("GET", f"{portal}/.well-known/oauth-authorization-server", 200)
    assert calls[:5] == [
        ("POST", mcp, 401),
        prm,
        asm,
        ("POST", f"{portal}/oauth/register", 201),
        ("POST", f"{portal}/oauth/token", 200),
    ], calls
    assert calls[-3:] == [("POST", mcp, 401), prm, asm], calls  # after the revocation: back to sign-in
    middle = calls[5:-3]
    assert ("POST", f"{portal}/oauth/token", 200) in middle  # the refresh, before any 401
    assert all(c == ("POST", mcp, 200) for c in middle if c[1] != f"{portal}/oauth/token"), calls
    assert "prompt=" not in person.urls[0] and "resource=" in person.urls[0]

    # What the person approved: the dynamic client, flagged unverified, asking for every pack.
    assert "Connect Poggio e2e (Python SDK) to Poggio?" in person.consent_text
    assert "Unverified app" in person.consent_text
    assert "127.0.0.1" in person.consent_text
    for pack in ("accounts:read", "contacts:read", "revenue:read"):
        assert pack in person.consent_text
    client = OAuthClient.get(OAuthClient.client_id == storage.client.client_id)
    assert client.kind == "dynamic" and storage.client.client_secret  # the SDK asked for client_secret_basic

    # The tokens the SDK held are all dead now: revoked grant, spent refresh token.
    assert _bearer_post(stack, second.access_token).status_code == 401
    refused = _token_request(
        stack, {"grant_type": "refresh_token", "refresh_token": second.refresh_token}, storage.client
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    answer = _bearer_post(stack, first.access_token)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


@pytest.mark.browser
def test_a_refresh_token_works_once_and_its_reuse_ends_the_grant(stack):
    """Rotation at the token endpoint: a refresh answers new tokens that work; presenting the spent
    refresh token again within the refresh grace answers the same pair (a lost answer), and after it
    is ``invalid_grant`` and revokes the grant, so the new tokens die too."""
    listener = RedirectListener()
    storage = MemoryStorage()

    async def main():
        async with chromium() as browser:
            person = Person(stack, browser, listener)
            auth = _provider(stack, person, storage, listener, token_endpoint_auth_method="none")
            async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
                names, _ = await _tools_and_account(http, stack.mcp_url)
                assert names == ALL_TOOLS

    try:
        anyio.run(main)
    finally:
        listener.close()
    assert storage.client.client_secret is None  # a public client: PKCE alone
    old = storage.tokens
    resource = {"resource": stack.mcp_url}
    fresh = _token_request(
        stack, {"grant_type": "refresh_token", "refresh_token": old.refresh_token, **resource}, storage.client
    )
    assert fresh.status_code == 200, fresh.text
    new = fresh.json()
    assert new["refresh_token"] != old.refresh_token and new["access_token"] != old.access_token
    assert new["scope"] == "accounts:read contacts:read revenue:read"
    assert _bearer_post(stack, new["access_token"]).status_code == 200
    # the answer may have been lost: within the refresh grace the same request gets the same pair
    retried = _token_request(
        stack, {"grant_type": "refresh_token", "refresh_token": old.refresh_token, **resource}, storage.client
    )
    assert retried.status_code == 200 and retried.json()["refresh_token"] == new["refresh_token"]
    assert retried.json()["access_token"] == new["access_token"]

    # past the grace, it is reuse
    OAuthTokenRow.update(refreshed_at=utcnow() - dt.timedelta(seconds=11)).where(
        OAuthTokenRow.refreshed_at.is_null(False)
    ).execute()
    reused = _token_request(
        stack, {"grant_type": "refresh_token", "refresh_token": old.refresh_token, **resource}, storage.client
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text
    assert "already used" in reused.json()["error_description"]
    assert _bearer_post(stack, new["access_token"]).status_code == 401  # the whole grant is gone
    after = _token_request(
        stack, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}, storage.client
    )
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    grant = _grant_of(storage.client.client_id)
    assert grant.revoked_at is not None and grant.revoked_reason == "refresh token reused"


def test_python_sdk_steps_up_when_a_call_needs_more_scope(stack):
    """The MCP authorization spec's scope challenge, with the SDK's own handling of it: connected to
    read, the app calls a write tool -> 403 insufficient_scope naming accounts:write -> the SDK
    authorizes again for what it has plus that -> the consent page shows the reads as granted and
    offers the addition -> the same connected app gains accounts:write -> the SDK repeats the call,
    which now succeeds. The person uses the portal's forms without a browser (FormPerson)."""
    listener = RedirectListener()
    person = FormPerson(stack)  # approves reads only, the first time
    storage = MemoryStorage()
    seen: list[tuple[str, str, int]] = []

    async def note(response):
        seen.append((response.request.method, str(response.request.url).split("?")[0], response.status_code))

    async def redirect_handler(url: str) -> None:
        back = await anyio.to_thread.run_sync(person.approve, url)
        await anyio.to_thread.run_sync(lambda: httpx.get(back, timeout=10))  # lands on the app's listener

    async def callback_handler() -> AuthorizationCodeResult:
        got = await anyio.to_thread.run_sync(listener.wait)
        assert "error" not in got and got["iss"] == stack.portal.url, got  # RFC 9207
        return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got["iss"])

    async def main():
        auth = OAuthClientProvider(
            stack.mcp_url,
            OAuthClientMetadata(
                redirect_uris=[listener.uri], client_name="Step-up app", token_endpoint_auth_method="none"
            ),
            storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        async with httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"response": [note]}) as http:
            async with Client(streamable_http_client(stack.mcp_url, http_client=http)) as client:
                assert {t.name for t in (await client.list_tools()).tools} == ALL_TOOLS  # reads only
                first = storage.tokens
                person.writes = {"accounts"}  # this time the admin approves the change asked for
                changed = await client.call_tool("update_account", {"domain": "example.com", "employees": 4321})
                assert not changed.is_error, changed
                return first

    try:
        first = anyio.run(main)
    finally:
        listener.close()
        person.close()
    mcp, portal = stack.mcp_url, stack.portal.url
    step = seen.index(("POST", mcp, 403))
    # the re-authorization's code exchanged, then the same call repeated, and answered
    assert seen[step + 1 : step + 3] == [("POST", f"{portal}/oauth/token", 200), ("POST", mcp, 200)], seen
    assert all(status < 400 for _, _, status in seen[step + 1 :]), seen
    assert len(person.urls) == 2
    assert "accounts:write" in parse_qs(urlsplit(person.urls[1]).query)["scope"][0].split()
    assert "Give Step-up app more access?" in person.consents[1] and "Already granted" in person.consents[1]
    assert "accounts:read, already granted" in person.consents[1]
    assert set(storage.tokens.scope.split()) >= {"accounts:write", "contacts:read", "revenue:read"}
    # one connected app, which gained the scope; its first token has it too (it is the grant's)
    grants = list(OAuthGrant.select().join(OAuthClient).where(OAuthClient.client_id == storage.client.client_id))
    assert len(grants) == 1 and grants[0].packs == "accounts:write,contacts,revenue"
    assert (
        Mcp(mcp, first.access_token).call("update_account", {"domain": "example.com", "employees": 4322}).is_error
        is False
    )
    added = AuditEvent.get((AuditEvent.action == "oauth.scope_added") & (AuditEvent.target == "Step-up app"))
    assert '"granted_now": "accounts:write,contacts,revenue"' in added.detail


# -- 2. a Client ID Metadata Document instead of registration -----------------------------------
@pytest.mark.browser
def test_python_sdk_with_a_client_id_metadata_document(stack):
    """The SDK offers an https ``client_metadata_url``; the portal fetches that document (over TLS
    from 127.0.0.1, allowed in this stack) and no dynamic registration takes place."""
    assert stack.oauth_metadata()["client_id_metadata_document_supported"] is True
    listener = RedirectListener()
    document = MetadataDocumentServer(
        stack.cert,
        stack.key,
        {  # the certificate the portal trusts
            "client_name": "Metadata Doc App",
            "redirect_uris": [listener.uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    )
    storage = MemoryStorage()
    seen: list[tuple[str, str]] = []
    log_start = len(stack.portal.log())

    async def note(response):
        seen.append((response.request.method, str(response.request.url)))

    async def main():
        async with chromium() as browser:
            person = Person(
                stack, browser, listener, screenshot=f"oauth-consent-metadata-document-{stack.instance.backend}.png"
            )
            auth = _provider(
                stack,
                person,
                storage,
                listener,
                client_metadata_url=document.client_id,
                token_endpoint_auth_method="none",
            )
            async with httpx2.AsyncClient(auth=auth, timeout=30, event_hooks={"response": [note]}) as http:
                names, account = await _tools_and_account(http, stack.mcp_url)
            return person, names, account

    try:
        person, names, account = anyio.run(main)
    finally:
        listener.close()
        document.close()
    assert names == ALL_TOOLS and account["account"]["name"] == "Example Corp"
    assert storage.client.client_id == document.client_id
    assert not [u for m, u in seen if u.endswith("/oauth/register")]
    assert "/oauth/register" not in stack.portal.log()[log_start:]  # its access log: none from anyone
    row = OAuthClient.get(OAuthClient.client_id == document.client_id)
    assert row.kind == "metadata" and row.name == "Metadata Doc App"
    assert document.requests >= 1
    assert "Metadata Doc App" in person.consent_text
    assert document.client_id in person.consent_text  # "describes itself at <url>"
    assert "Unverified app" not in person.consent_text


# -- 3. client_credentials ---------------------------------------------------------------------
def _poggio(stack: OAuthStack, *args: str) -> str:
    """The ``poggio`` command on the stack's instance, as an operator runs it; its standard output."""
    env = {
        **os.environ,
        **stack.instance.env,
        "POGGIO_MCP_PUBLIC_URL": stack.mcp_url,
        "POGGIO_PORTAL_PUBLIC_URL": stack.portal.url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "poggio", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_client_credentials_for_an_admins_client(stack):
    """``poggio oauth client create``'s client gets a token with HTTP Basic, sees only the packs it
    was created for, and is shut out on the next request once ``poggio oauth revoke`` ends it."""
    printed = dict(
        line.split("=", 1)
        for line in _poggio(
            stack, "oauth", "client", "create", "--workspace", "acme", "--name", "Robot", "--packs", "accounts"
        ).split()
    )
    client_id, secret = printed["client_id"], printed["client_secret"]

    wrong = _token_request(stack, {"grant_type": "client_credentials"}, basic=(client_id, generate("pgos_")))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    answer = _token_request(stack, {"grant_type": "client_credentials"}, basic=(client_id, secret))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "accounts:read"
    assert body["access_token"].startswith("pgoa_") and "refresh_token" not in body
    assert body["expires_in"] == ACCESS_SECONDS

    robot = Mcp(stack.mcp_url, body["access_token"])
    assert set(robot.tool_names()) == {"search_accounts", "get_account"}
    account = robot.call("get_account", {"domain": "example.com"})
    assert not account.is_error and account.structured_content["account"]["name"] == "Example Corp"

    assert "Robot" in _poggio(stack, "oauth", "revoke", "--workspace", "acme", client_id)
    assert robot.status_of_failure() == 401
    again = _token_request(stack, {"grant_type": "client_credentials"}, basic=(client_id, secret))
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert AuditEvent.select().where(AuditEvent.action == "oauth.client_revoked").count() == 1
