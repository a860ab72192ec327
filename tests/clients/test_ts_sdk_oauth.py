"""The official TypeScript SDK signing in to Poggio over OAuth, end to end: ``ts_sdk_oauth.mjs`` is a
native app on the SDK (``@modelcontextprotocol/sdk`` 1.x, and ``@modelcontextprotocol/client`` 2.x in
both protocol eras) with its own loopback redirect URI. Against a real portal and MCP server it meets
the 401, discovers the authorization server, registers dynamically as a native app, and hands over
the authorization URL; the person (the portal's forms, filled by :class:`FormPerson`) signs in and
approves; the browser's redirect reaches the app's callback server; the app redeems the code,
reconnects, lists the tools and calls one. Also: the app offering a Client ID Metadata Document
instead of registering, and the scope step-up on a write (403 ``insufficient_scope``)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from node_tools import NODE_DIR, node_env
from oauth_support import ALL_TOOLS, FormPerson, MetadataDocumentServer, oauth_stack

from poggio.storage.models import OAuthClient, OAuthGrant

pytestmark = pytest.mark.clients
SCRIPT = Path(__file__).resolve().parent / "ts_sdk_oauth.mjs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with oauth_stack(tmp_path_factory.mktemp("ts-sdk-oauth"), "sqlite") as s:
        yield s


class NodeApp:
    """``node ts_sdk_oauth.mjs`` as a process whose stdout is one JSON event per line."""

    def __init__(self, url: str, package: str, era: str, home: Path, *extra: str):
        node, env = node_env(home)
        env["POGGIO_NODE_MODULES"] = str(NODE_DIR / "node_modules")
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), url, "--package", package, "--era", era, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=env["HOME"],
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)
        put(None)

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        """The next event named ``event`` (earlier ones are kept in :attr:`events`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {event!r} event within {timeout}s; events: {self.events}\n"
                    f"stderr: {''.join(self._stderr)[-4000:]}"
                ) from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(
                    f"the app exited ({self.proc.wait(5)}) before {event!r}; events: "
                    f"{self.events}\nstderr: {''.join(self._stderr)[-4000:]}"
                )
            try:
                got = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(got)
            if got["event"] == "error":
                raise AssertionError(f"the app failed: {got['message']}\n{got.get('stack')}")
            if got["event"] == event:
                return got

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _sign_in(stack, app: NodeApp, person: FormPerson, redirect_uri: str) -> dict[str, str]:
    """The person's part of one authorization: the app prints the URL, the person signs in (the first
    time) and approves on the portal, the browser follows the redirect to the app's callback port.
    Returns the authorization request's parameters."""
    url = app.wait_for("authorize")["url"]
    assert url.startswith(f"{stack.portal.url}/oauth/authorize?")
    asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert asked["redirect_uri"] == redirect_uri and asked["code_challenge_method"] == "S256"
    assert asked["resource"] == stack.mcp_url

    back = person.approve(url)
    assert back.startswith(redirect_uri + "?"), back
    answer = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    assert answer["iss"] == stack.oauth_metadata()["issuer"] and answer["state"] == asked["state"]  # RFC 9207
    landed = httpx.get(back, timeout=10)  # the browser follows the redirect to the app's port
    assert landed.status_code == 200 and "You can close this window" in landed.text
    assert app.wait_for("callback")["params"] == answer
    token = app.wait_for("token")
    assert token["status"] == 200
    assert {"grant_type", "code", "code_verifier", "redirect_uri", "resource", "client_id"} <= set(token["fields"])
    return asked


def _read(app: NodeApp, package: str, era: str) -> dict[str, Any]:
    connected = app.wait_for("connected")
    assert connected["server"]["name"] == "Poggio"
    if package == "client":
        assert connected["era"] == era
        assert connected["protocol_version"] == ("2026-07-28" if era == "modern" else "2025-11-25")
    assert set(app.wait_for("tools")["names"]) == ALL_TOOLS
    result = app.wait_for("called")["result"]
    assert not result.get("isError") and "Example Corp" in result["content"][0]["text"], result
    return connected


ERAS = [("sdk", "legacy"), ("client", "legacy"), ("client", "modern")]
ERA_IDS = ["sdk-1.x", "client-2.x-legacy", "client-2.x-modern"]


@pytest.mark.parametrize("package, era", ERAS, ids=ERA_IDS)
def test_typescript_sdk_signs_in_and_calls_a_tool(stack, tmp_path, package, era, report):
    app = NodeApp(stack.mcp_url, package, era, tmp_path / "home")
    person = FormPerson(stack)
    try:
        redirect_uri = app.wait_for("listening")["redirect_uri"]
        sent = app.wait_for("register")["body"]  # what the SDK sends the registration endpoint
        assert sent["application_type"] == "native" and sent["token_endpoint_auth_method"] == "none"
        assert sent["redirect_uris"] == [redirect_uri]
        registered = app.wait_for("registered")["client"]
        assert registered["client_id"] and "client_secret" not in registered
        _sign_in(stack, app, person, redirect_uri)
        connected = _read(app, package, era)
        app.wait_for("done")
        assert app.proc.wait(10) == 0
    finally:
        person.close()
        app.stop()

    row = OAuthClient.get(OAuthClient.client_id == registered["client_id"])
    assert row.kind == "dynamic" and row.application_type == "native"
    assert json.loads(row.metadata)["redirect_uris"] == [redirect_uri]
    assert OAuthGrant.select().where(OAuthGrant.client == row).count() == 1
    report(
        f"TypeScript SDK ({package}, {era} era, protocol {connected['protocol_version']}): 401, discovery, "
        "dynamic registration as a native app with a loopback redirect, sign-in + consent, iss on the "
        "redirect, code redeemed, tools/list + tools/call get_account"
    )


@pytest.mark.parametrize("package", ["sdk", "client"], ids=["sdk-1.x", "client-2.x"])
def test_typescript_sdk_with_a_client_id_metadata_document(stack, tmp_path, package, report):
    """The app offers an https metadata URL as its client_id (the portal advertises
    ``client_id_metadata_document_supported``): no registration; the document lists a port-less
    loopback redirect URI, and the app's port, whatever it is, is accepted (RFC 8252 §7.3)."""
    document = MetadataDocumentServer(
        stack.cert,
        stack.key,
        {
            "client_name": "TypeScript CIMD app",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "application_type": "native",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    )
    app = NodeApp(stack.mcp_url, package, "legacy", tmp_path / "home", "--metadata-url", document.client_id)
    person = FormPerson(stack)
    try:
        redirect_uri = app.wait_for("listening")["redirect_uri"]
        asked = _sign_in(stack, app, person, redirect_uri)
        assert asked["client_id"] == document.client_id
        _read(app, package, "legacy")
        app.wait_for("done")
        assert app.proc.wait(10) == 0
    finally:
        person.close()
        app.stop()
        document.close()
    assert not [e for e in app.events if e["event"] == "register"]
    row = OAuthClient.get(OAuthClient.client_id == document.client_id)
    assert row.kind == "metadata" and row.application_type == "native" and document.requests >= 1
    assert "TypeScript CIMD app" in person.consents[0]
    report(
        f"TypeScript SDK ({package}) with a Client ID Metadata Document listing a port-less loopback "
        "redirect: no registration, sign-in on a random port, tools/list + tools/call"
    )


STEP_UP = [("client", "legacy"), ("client", "modern")]


@pytest.mark.parametrize("package, era", STEP_UP, ids=["client-2.x-legacy", "client-2.x-modern"])
def test_typescript_sdk_steps_up_when_a_call_needs_more_scope(stack, tmp_path, package, era, report):
    """Approved to read, the app calls update_account: 403 insufficient_scope naming what it has plus
    accounts:write; the SDK authorizes again for that, the admin approves the addition, and the
    repeated call changes the account. One connected app, which gained the scope."""
    app = NodeApp(stack.mcp_url, package, era, tmp_path / "home", "--step-up", "yes")
    person = FormPerson(stack)  # approves reads only, the first time
    try:
        redirect_uri = app.wait_for("listening")["redirect_uri"]
        client_id = _sign_in(stack, app, person, redirect_uri)["client_id"]
        _read(app, package, era)
        person.writes = {"accounts"}  # this time the admin approves the change asked for
        again = _sign_in(stack, app, person, redirect_uri)
        assert "accounts:write" in again["scope"].split() and "accounts:read" in again["scope"].split()
        changed = app.wait_for("changed")["result"]
        assert not changed.get("isError"), changed
        app.wait_for("done")
        assert app.proc.wait(10) == 0
    finally:
        person.close()
        app.stop()
    assert "Already granted" in person.consents[1]
    grants = list(OAuthGrant.select().join(OAuthClient).where(OAuthClient.client_id == client_id))
    assert len(grants) == 1 and "accounts:write" in grants[0].packs.split(",")
    report(
        f"TypeScript SDK ({package}, {era} era): 403 insufficient_scope on a write, re-authorization for "
        "the challenge's scope, the addition approved, the call repeated and answered"
    )


def test_typescript_sdk_1x_refreshes_instead_of_stepping_up(stack, tmp_path, report):
    """Pinned as it is (SDK 1.32, modelcontextprotocol/typescript-sdk#2255, fixed in 2.x): on the 403
    the 1.x transport's auth() holds a refresh token, so it refreshes (a refresh cannot widen a
    grant, RFC 6749 §6), repeats the call, gets the same 403 and gives up with "Server returned 403
    after trying upscoping", never asking the person. Poggio's part is right: the refresh is
    answered, the grant is unchanged (reads only), nothing is written."""
    app = NodeApp(stack.mcp_url, "sdk", "legacy", tmp_path / "home", "--step-up", "yes")
    person = FormPerson(stack)
    try:
        redirect_uri = app.wait_for("listening")["redirect_uri"]
        client_id = _sign_in(stack, app, person, redirect_uri)["client_id"]
        _read(app, "sdk", "legacy")
        refreshed = app.wait_for("token")
        assert refreshed["status"] == 200 and "refresh_token" in refreshed["fields"]
        assert "scope" not in refreshed["fields"]
        assert "Server returned 403 after trying upscoping" in app.wait_for("refused")["message"]
        app.wait_for("done")
    finally:
        person.close()
        app.stop()
    assert len(person.urls) == 1 and not [e for e in app.events if e["event"] == "authorize"][1:]
    grants = list(OAuthGrant.select().join(OAuthClient).where(OAuthClient.client_id == client_id))
    assert len(grants) == 1 and "accounts:write" not in grants[0].packs.split(",")
    report(
        "TypeScript SDK 1.32 on a 403 insufficient_scope: refreshes instead of asking again and gives up "
        "(typescript-sdk#2255; 2.x steps up)"
    )
