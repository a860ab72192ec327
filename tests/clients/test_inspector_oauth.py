"""MCP Inspector's CLI (2.12) signing in to Poggio over OAuth, end to end, with no header configured.

The CLI starts a sign-in only when a person may be present (a TTY) or when ``MCP_AUTO_OPEN_ENABLED=true``
forces it (``assertInteractiveOAuthAllowed`` in its ``core/cli/cliOAuth.ts``); then it registers
(``client_name`` "MCP Inspector", ``application_type`` native, no secret), prints
``Please navigate to: <url>`` on stderr, opens the URL through ``$BROWSER`` (here a script that only
writes it down), and waits on its callback listener (``--callback-url``, a loopback URL) for the code.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from instances import free_port
from node_tools import node_env, tool_script
from oauth_support import ALL_TOOLS, FormPerson, oauth_stack

from poggio.storage.models import OAuthClient, OAuthGrant

pytestmark = pytest.mark.clients
NAVIGATE = re.compile(r"Please navigate to: (\S+)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with oauth_stack(tmp_path_factory.mktemp("inspector-oauth"), "sqlite") as s:
        yield s


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _signed_in_run(stack, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """``mcp-inspector --cli <mcp url> --transport http --format json <args>`` with no header; the
    person approves (reads only) the one sign-in it starts. Returns (the finished process, the
    authorization request's parameters, the URL it opened through $BROWSER)."""
    home = tmp_path / "home"
    node, env = node_env(home)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    browser.chmod(0o755)
    env.update({"BROWSER": str(browser), "MCP_AUTO_OPEN_ENABLED": "true"})
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    stderr = tmp_path / "stderr.txt"
    cmd = [
        node,
        str(tool_script("mcp-inspector")),
        "--cli",
        stack.mcp_url,
        "--transport",
        "http",
        "--format",
        "json",
        "--callback-url",
        callback,
        *args,
    ]
    person = FormPerson(stack)
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=env["HOME"]
        )
    try:
        url = _wait_for(
            lambda: (m := NAVIGATE.search(stderr.read_text())) and m.group(1),
            60,
            "the Inspector to print the authorization URL",
        )
        assert url.startswith(f"{stack.portal.url}/oauth/authorize?")
        asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert asked["redirect_uri"] == callback and asked["resource"] == stack.mcp_url

        back = person.approve(url)
        assert back.startswith(callback + "?"), back
        answer = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        assert answer["iss"] == stack.oauth_metadata()["issuer"] and answer["state"] == asked["state"]
        landed = httpx.get(back, timeout=10)  # the browser follows the redirect to the Inspector's listener
        assert landed.status_code == 200, landed.text[:2000]
        out, _ = proc.communicate(timeout=60)
    finally:
        person.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Authorization complete." in stderr.read_text()
    return (
        subprocess.CompletedProcess(cmd, proc.returncode, out, stderr.read_text()),
        asked,
        opened.read_text().strip(),
    )


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_cli_signs_in_and_lists_tools(stack, tmp_path, era, report):
    done, asked, opened = _signed_in_run(stack, tmp_path, "--method", "tools/list", "--protocol-era", era)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert {t["name"] for t in json.loads(done.stdout)["result"]["tools"]} == ALL_TOOLS
    assert opened == NAVIGATE.search(done.stderr).group(1)  # it opened the URL it printed

    row = OAuthClient.get(OAuthClient.client_id == asked["client_id"])
    metadata = json.loads(row.metadata)
    assert row.name == "MCP Inspector" and row.kind == "dynamic" and row.application_type == "native"
    assert metadata["redirect_uris"] == [asked["redirect_uri"]] and metadata["token_endpoint_auth_method"] == "none"
    assert OAuthGrant.select().where(OAuthGrant.client == row).count() == 1
    report(
        f"MCP Inspector CLI ({era} era, no header, MCP_AUTO_OPEN_ENABLED=true): registration as a native app, "
        "authorization URL on stderr and through $BROWSER, sign-in + consent, code on its --callback-url "
        f"listener, tools/list ({len(ALL_TOOLS)} tools)"
    )


def test_inspector_cli_cannot_reach_a_write_tool_a_read_grant_hides(stack, tmp_path, report):
    """Pinned as it is: a grant to read lists no write tool (ScopeMiddleware), and the Inspector's
    tools/call looks the tool up in tools/list before calling it, so it stops at "not found": the
    403 insufficient_scope that would let it step up is never asked for. (Clients that call by name,
    the SDKs and mcp-remote, do step up: test_ts_sdk_oauth, test_oauth_clients.)"""
    done, _, _ = _signed_in_run(
        stack,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "update_account",
        "--tool-args-json",
        json.dumps({"domain": "example.com", "employees": 5}),
    )
    assert done.returncode == 5, (done.stdout, done.stderr)  # the Inspector's exit code for an unknown tool
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"]["code"] == "tool_not_found"
    assert "Proceed with step-up" not in done.stderr
    report(
        "MCP Inspector CLI on a read grant, tools/call update_account: tool_not_found (write tools are not "
        "listed to a read grant, so no step-up is offered)"
    )


def test_inspector_cli_without_a_tty_does_not_start_a_sign_in(stack, tmp_path):
    """The default for CI: no TTY and no MCP_AUTO_OPEN_ENABLED=true, so no sign-in: exit 3, and
    nothing registered."""
    node, env = node_env(tmp_path / "home")
    env["MCP_AUTO_OPEN_ENABLED"] = "false"
    before = OAuthClient.select().count()
    proc = subprocess.run(
        [
            node,
            str(tool_script("mcp-inspector")),
            "--cli",
            stack.mcp_url,
            "--transport",
            "http",
            "--method",
            "tools/list",
            "--format",
            "json",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=env["HOME"],
        timeout=60,
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert json.loads(proc.stderr)["error"]["code"] == "auth_required"
    assert "Interactive OAuth requires a TTY" in proc.stderr
    assert OAuthClient.select().count() == before
