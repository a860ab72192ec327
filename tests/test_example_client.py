"""examples/python_client.py, the spec's "custom application integration" example, run as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from instances import ROOT, ServerProcess, free_port

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import get_workspace, set_entitlement
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry


@pytest.fixture
def served(instance):
    registry = PackRegistry.load()
    ws = demo.build(registry, "acme", accounts=20).workspace
    token = TokenService().create(ws, "example client", Actor.cli()).plaintext
    server = ServerProcess(instance)
    yield server, token
    server.stop()


def example(url: str, token: str | None, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POGGIO_")}
    env["POGGIO_MCP_URL"] = url
    if token is not None:
        env["POGGIO_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "examples/python_client.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lists_tools_and_prints_the_account(served):
    server, token = served
    done = example(server.mcp_url, token, "example.com")
    assert done.returncode == 0, done.stderr
    assert "Connected to Poggio" in done.stdout
    assert "Tools: search_accounts, get_account" in done.stdout
    assert "# Example Corp (example.com)" in done.stdout and "## Contacts (3)" in done.stdout


def test_refusals_are_one_line_and_non_zero(served):
    server, token = served
    wrong = example(server.mcp_url, "pgo_" + "0" * 33)
    assert wrong.returncode == 1 and wrong.stderr.strip().startswith("error: HTTP 401")
    assert len(wrong.stderr.strip().splitlines()) == 1
    unknown = example(server.mcp_url, token, "nowhere.example")
    assert unknown.returncode == 1 and "no account with domain" in unknown.stderr
    set_entitlement(get_workspace("acme"), False, Actor.cli())
    forbidden = example(server.mcp_url, token)
    assert forbidden.returncode == 1 and forbidden.stderr.startswith("error: HTTP 403")
    unreachable = example(f"http://127.0.0.1:{free_port()}/mcp", token)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    missing = example(server.mcp_url, None)
    assert missing.returncode == 2 and "POGGIO_TOKEN" in missing.stderr


@pytest.fixture
def portal(instance):
    """The real portal (``poggio portal``, gunicorn) on a port of its own: the URL people paste by mistake."""
    import httpx

    port = free_port()
    env = {**os.environ, **instance.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "poggio", "portal", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(150):
            assert proc.poll() is None, "the portal exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("wrong", ["portal", "portal-mcp", "no-mcp-path"])
def test_a_wrong_url_is_named_in_one_line(served, portal, wrong):
    """The portal's address (with or without /mcp) or the server's without /mcp: the URL, what it
    answered, and where the right URL is shown; not an ExceptionGroup from the SDK's task group."""
    server, token = served
    url = {"portal": portal, "portal-mcp": f"{portal}/mcp", "no-mcp-path": server.url}[wrong]
    done = example(url, token)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {url} answered "), lines[0]
    assert "is this the MCP server URL shown in Settings > MCP Server?" in lines[0]
    assert "ExceptionGroup" not in done.stderr and "TaskGroup" not in done.stderr
