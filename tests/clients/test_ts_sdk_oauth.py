"""The official TypeScript SDK signing in to Poggio over OAuth, end to end: ``ts_sdk_oauth.mjs`` is a
native app on the SDK (``@modelcontextprotocol/sdk`` 1.x, and ``@modelcontextprotocol/client`` 2.x in
both protocol eras) with its own loopback redirect URI. Against a real portal and MCP server it meets
the 401, discovers the authorization server, registers dynamically as a native app, and hands over
the authorization URL; the person (the portal's forms, filled by :class:`FormPerson`) signs in and
approves; the browser's redirect reaches the app's callback server; the app redeems the code,
reconnects, lists the tools and calls one."""

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
from oauth_support import ALL_TOOLS, FormPerson, oauth_stack

from poggio.models import OAuthClient, OAuthGrant

pytestmark = pytest.mark.clients
SCRIPT = Path(__file__).resolve().parent / "ts_sdk_oauth.mjs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with oauth_stack(tmp_path_factory.mktemp("ts-sdk-oauth"), "sqlite") as s:
        yield s


class NodeApp:
    """``node ts_sdk_oauth.mjs`` as a process whose stdout is one JSON event per line."""

    def __init__(self, url: str, package: str, era: str, home: Path):
        node, env = node_env(home)
        env["POGGIO_NODE_MODULES"] = str(NODE_DIR / "node_modules")
        self.proc = subprocess.Popen([node, str(SCRIPT), url, "--package", package, "--era", era],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env=env, cwd=env["HOME"])
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
                raise AssertionError(f"no {event!r} event within {timeout}s; events: {self.events}\n"
                                     f"stderr: {''.join(self._stderr)[-4000:]}") from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(f"the app exited ({self.proc.wait(5)}) before {event!r}; events: "
                                     f"{self.events}\nstderr: {''.join(self._stderr)[-4000:]}")
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


@pytest.mark.parametrize("package, era", [("sdk", "legacy"), ("client", "legacy"), ("client", "modern")],
                         ids=["sdk-1.x", "client-2.x-legacy", "client-2.x-modern"])
def test_typescript_sdk_signs_in_and_calls_a_tool(stack, tmp_path, package, era, report):
    issuer = stack.oauth_metadata()["issuer"]
    app = NodeApp(stack.mcp_url, package, era, tmp_path / "home")
    person = FormPerson(stack)
    try:
        redirect_uri = app.wait_for("listening")["redirect_uri"]
        sent = app.wait_for("register")["body"]  # what the SDK sends the registration endpoint
        assert sent["application_type"] == "native" and sent["token_endpoint_auth_method"] == "none"
        assert sent["redirect_uris"] == [redirect_uri]
        registered = app.wait_for("registered")["client"]
        assert registered["client_id"] and "client_secret" not in registered

        url = app.wait_for("authorize")["url"]
        assert url.startswith(f"{stack.portal.url}/oauth/authorize?")
        asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert asked["redirect_uri"] == redirect_uri and asked["code_challenge_method"] == "S256"
        assert asked["resource"] == stack.mcp_url

        back = person.approve(url)  # sign in as the admin, approve what the consent page offers
        assert back.startswith(redirect_uri + "?"), back
        answer = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        assert answer["iss"] == issuer and answer["state"] == asked["state"]  # RFC 9207
        landed = httpx.get(back, timeout=10)  # the browser follows the redirect to the app's port
        assert landed.status_code == 200 and "You can close this window" in landed.text
        assert app.wait_for("callback")["params"] == answer

        token = app.wait_for("token")
        assert token["status"] == 200
        assert {"grant_type", "code", "code_verifier", "redirect_uri", "resource", "client_id"} <= set(token["fields"])
        connected = app.wait_for("connected")
        assert connected["server"]["name"] == "Poggio"
        if package == "client":
            assert connected["era"] == era
            if era == "modern":
                assert connected["protocol_version"] == "2026-07-28"
        assert set(app.wait_for("tools")["names"]) == ALL_TOOLS
        result = app.wait_for("called")["result"]
        assert not result.get("isError") and "Example Corp" in result["content"][0]["text"], result
        app.wait_for("done")
        assert app.proc.wait(10) == 0
    finally:
        person.close()
        app.stop()

    row = OAuthClient.get(OAuthClient.client_id == registered["client_id"])
    assert row.kind == "dynamic" and row.application_type == "native"
    assert json.loads(row.metadata)["redirect_uris"] == [redirect_uri]
    assert OAuthGrant.select().where(OAuthGrant.client == row).count() == 1
    report(f"TypeScript SDK ({package}, {era} era, protocol {connected['protocol_version']}): 401, discovery, "
           "dynamic registration as a native app with a loopback redirect, sign-in + consent, iss on the "
           "redirect, code redeemed, tools/list + tools/call get_account")
