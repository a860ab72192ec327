"""Node MCP clients and Poggio's OAuth: mcp-remote signing in through the portal with no header
configured (its own callback server receives the code), and what the clients people configure
with a fixed ``Authorization`` header show when that API token is not valid."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from node_tools import McpRemote, run_inspector_cli
from oauth_support import ALL_TOOLS, FormPerson, chromium, oauth_stack, sign_in_and_approve

from poggio.identity.tokens import TokenRejected
from poggio.security.token_format import generate
from poggio.storage.models import OAuthClient, OAuthGrant

pytestmark = pytest.mark.clients
AUTHORIZE_PROMPT = "Please authorize this client by visiting:"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with oauth_stack(tmp_path_factory.mktemp("oauth-clients"), "sqlite") as s:
        yield s


@pytest.fixture
def opened(tmp_path, monkeypatch) -> Path:
    """mcp-remote opens the authorization URL through ``$BROWSER`` (xdg-open's rule on a machine
    without a desktop); this one writes it to a file, where the test reads it, instead."""
    urls = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{urls}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(script))
    return urls


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.browser
def test_mcp_remote_signs_in_through_the_portal(stack, tmp_path, opened, report):
    """No header: mcp-remote discovers the portal, registers, prints the authorization URL and opens
    it; the person signs in and approves in Chromium; mcp-remote's own callback server receives the
    code; tools work over its stdio. A second start reuses the tokens it stored: no sign-in."""
    home = tmp_path / "home"
    with McpRemote(stack.mcp_url, None, home=home, default_timeout=60) as bridge, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(bridge.initialize)  # answered once the sign-in is done
        url = _wait_for(lambda: opened.exists() and opened.read_text().strip(), 30, "mcp-remote to open a browser")
        assert AUTHORIZE_PROMPT in bridge.stderr
        assert url.startswith(f"{stack.portal.url}/oauth/authorize?")

        async def person():
            async with chromium() as browser:
                return await sign_in_and_approve(browser, stack, url, screenshot="oauth-consent-mcp-remote.png")

        consent, landed = anyio.run(person)
        assert "Connect MCP CLI Proxy to Poggio?" in consent
        assert "Authorization successful" in landed  # mcp-remote's callback page
        init = pending.result(timeout=60)
        assert init["result"]["serverInfo"]["name"] == "Poggio", init
        assert {t["name"] for t in bridge.list_tools()["result"]["tools"]} == ALL_TOOLS
        answer = bridge.call_tool("get_account", {"domain": "example.com"})["result"]
        assert not answer.get("isError") and "Example Corp" in answer["content"][0]["text"]
    client = OAuthClient.get(OAuthClient.name == "MCP CLI Proxy")
    assert client.kind == "dynamic"

    with McpRemote(stack.mcp_url, None, home=home) as again:
        assert again.initialize()["result"]["serverInfo"]["name"] == "Poggio"
        assert {t["name"] for t in again.list_tools()["result"]["tools"]} == ALL_TOOLS
    assert len(opened.read_text().split()) == 1  # no second sign-in
    report(
        "mcp-remote (no header): discovery, registration, sign-in and consent in Chromium, callback on its "
        "own port, initialize + tools/list + tools/call; restarted, it reuses its stored tokens"
    )


def _unknown_api_token() -> str:
    return generate()  # well formed (prefix, length, checksum), so the server looks it up: unknown


def test_the_challenge_for_an_invalid_api_token(stack):
    """What every header client gets: 401, ``error="invalid_token"`` with the reason, and the
    resource metadata (which is what sends an OAuth-capable client into a sign-in)."""
    answer = httpx.post(
        stack.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {_unknown_api_token()}", "Accept": "application/json, text/event-stream"},
        timeout=10,
    )
    message = TokenRejected.MESSAGES["invalid"]
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="Poggio", resource_metadata="{stack.mcp.url}/.well-known/oauth-protected-resource/mcp", '
        f'error="invalid_token", error_description="{message}"'
    )
    assert answer.json() == {"error": "invalid_token", "reason": "invalid", "error_description": message}


def test_inspector_cli_says_the_api_token_is_invalid(stack, tmp_path, report):
    """Inspector's CLI with a fixed header does not start a sign-in: it exits 3 and shows Poggio's
    reason (the 401 body) on stderr."""
    proc = run_inspector_cli(stack.mcp_url, _unknown_api_token(), "tools/list", home=tmp_path)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    error = json.loads(proc.stderr)["error"]
    assert error["code"] == "auth_required"
    assert "invalid_token" in error["message"]
    assert "The bearer token is not valid: it is unknown, revoked or expired" in error["message"]
    assert "Dynamic Client Registration" not in proc.stderr
    report(f"MCP Inspector CLI with an unknown API token: exit 3, stderr: {error['message'][:160]}")


def test_mcp_remote_with_an_invalid_api_token_header_asks_for_a_sign_in(stack, tmp_path, opened, report):
    """Pinned as it is today (mcp-remote 0.15.1): with a fixed header whose API token is unknown,
    mcp-remote follows the challenge's resource_metadata into OAuth: it registers a client, prints
    the authorization URL and opens a browser. Nothing it prints names the invalid token. (Approving
    does not help: its fixed header still replaces the OAuth token, so it asks again.)"""
    before = OAuthClient.select().count()
    with McpRemote(stack.mcp_url, _unknown_api_token(), home=tmp_path / "home") as bridge:
        bridge.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        url = _wait_for(lambda: opened.exists() and opened.read_text().strip(), 30, "mcp-remote to open a browser")
        _wait_for(lambda: "Waiting for authorization" in bridge.stderr, 10, "mcp-remote to wait for the sign-in")
        bridge.close(timeout=1)
    shown = bridge.stderr
    assert "Using custom headers: Authorization" in shown
    assert f"{AUTHORIZE_PROMPT}\n{stack.portal.url}/oauth/authorize?" in shown
    assert url.startswith(f"{stack.portal.url}/oauth/authorize?")
    assert "Dynamic Client Registration rejected" not in shown
    assert "invalid_token" not in shown and "not valid" not in shown  # the reason is not shown
    assert OAuthClient.select().count() == before + 1  # it registered itself
    report(
        "mcp-remote with an unknown API token in --header: starts an OAuth sign-in (registers, prints and "
        "opens the authorization URL); it does not show that the token is invalid"
    )


def test_mcp_remote_signs_in_with_the_portal_forms_and_steps_up(stack, tmp_path, opened, report):
    """The same sign-in without a browser (FormPerson posts the portal's forms; the redirect, with
    ``iss``, is followed to mcp-remote's callback port), so it runs wherever Node does. Then a write:
    403 insufficient_scope, mcp-remote opens a second authorization for what it has plus
    accounts:write, the admin approves the addition, and the call it held is answered."""
    person = FormPerson(stack)  # approves reads only, the first time
    try:
        with (
            McpRemote(stack.mcp_url, None, home=tmp_path / "home", default_timeout=60) as bridge,
            ThreadPoolExecutor(1) as pool,
        ):
            pending = pool.submit(bridge.initialize)
            url = _wait_for(lambda: opened.exists() and opened.read_text().strip(), 30, "mcp-remote to open a browser")
            asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            back = person.approve(url)
            assert back.startswith(asked["redirect_uri"] + "?"), back
            assert parse_qs(urlsplit(back).query)["iss"] == [stack.oauth_metadata()["issuer"]]  # RFC 9207
            assert httpx.get(back, timeout=10).status_code == 200  # lands on mcp-remote's callback server
            assert pending.result(timeout=60)["result"]["serverInfo"]["name"] == "Poggio"
            assert {t["name"] for t in bridge.list_tools()["result"]["tools"]} == ALL_TOOLS

            person.writes = {"accounts"}  # this time the admin approves the change asked for
            change = pool.submit(bridge.call_tool, "update_account", {"domain": "example.com", "employees": 77})
            again = _wait_for(lambda: opened.read_text().split()[1:], 30, "mcp-remote to ask again")[0]
            assert "accounts:write" in parse_qs(urlsplit(again).query)["scope"][0].split()
            back = person.approve(again)
            assert httpx.get(back, timeout=10).status_code == 200
            answer = change.result(timeout=60)["result"]
            assert not answer["isError"] and "77 employees" in answer["content"][0]["text"], answer
    finally:
        person.close()
    assert "Already granted" in person.consents[1]
    row = OAuthClient.get(OAuthClient.client_id == asked["client_id"])
    metadata = json.loads(row.metadata)
    assert row.name == "MCP CLI Proxy" and row.kind == "dynamic" and row.application_type == "native"
    assert metadata["token_endpoint_auth_method"] == "none"
    assert metadata["redirect_uris"] == [asked["redirect_uri"]]
    assert urlsplit(asked["redirect_uri"]).hostname == "localhost"
    assert urlsplit(asked["redirect_uri"]).path == "/oauth/callback"
    grants = list(OAuthGrant.select().where(OAuthGrant.client == row))
    assert len(grants) == 1 and "accounts:write" in grants[0].packs.split(",")
    report(
        "mcp-remote (no header, portal forms without a browser): registration as a native app "
        f"({asked['redirect_uri']}), iss on the redirect, tools/list; a write steps up: second authorization, "
        "addition approved, the held call answered"
    )
