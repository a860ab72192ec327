"""The Node client harness, proved against a throwaway bare MCP server (``_toy_server.py``).

These tests are about the harness (node_tools.py, auth-preload.mjs, ensure-node.sh), not Poggio: if
they fail, fix the harness before reading anything into the Poggio client tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_tools import McpRemote, McpRemoteError, run_conformance, run_inspector_cli

pytestmark = pytest.mark.clients

TOY = Path(__file__).resolve().parent / "_toy_server.py"
TOKEN = "secret"

# Conformance scenarios a tools-only server answering JSON (stateless, no SSE) can pass, given the
# fixture tools; see conformance/SCENARIOS.md.
TOOLS_ONLY_SCENARIOS = [
    "server-initialize", "ping", "tools-list", "tools-call-simple-text", "tools-call-image",
    "tools-call-audio", "tools-call-embedded-resource", "tools-call-mixed-content", "tools-call-error",
    "dns-rebinding-protection",
]


def _start_toy(*flags: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(TOY), "--port", "0", "--token", TOKEN, *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "READY <url>", or EOF if it died
        if not line.startswith("READY "):
            proc.kill()
            raise RuntimeError(f"toy server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def toy_url() -> Iterator[str]:
    """Stateless, JSON responses: the same transport shape as Poggio's /mcp."""
    yield from _start_toy()


@pytest.fixture(scope="module")
def toy_sse_url() -> Iterator[str]:
    """SSE responses plus logging/setLevel: what the logging/progress scenarios need."""
    yield from _start_toy("--sse", "--logging")


# ------------------------------------------------------------------------------------------ inspector
def test_inspector_lists_tools(toy_url, tmp_path):
    proc = run_inspector_cli(toy_url, TOKEN, "tools/list", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = {t["name"] for t in json.loads(proc.stdout)["result"]["tools"]}
    assert {"echo", "add", "test_simple_text"} <= names


def test_inspector_calls_a_tool(toy_url, tmp_path):
    proc = run_inspector_cli(toy_url, TOKEN, "tools/call", "echo", {"text": "a b  c"}, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["isError"] is False
    assert result["content"] == [{"type": "text", "text": "echo: a b  c"}]


@pytest.mark.parametrize("token", ["wrong", None])
def test_inspector_bad_or_missing_token_exits_3(toy_url, tmp_path, token):
    proc = run_inspector_cli(toy_url, token, "tools/list", home=tmp_path)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert json.loads(proc.stderr)["error"]["code"] == "auth_required"


def test_inspector_tool_error_exits_5(toy_url, tmp_path):
    proc = run_inspector_cli(toy_url, TOKEN, "tools/call", "test_error_handling", {}, home=tmp_path)
    assert proc.returncode == 5
    assert json.loads(proc.stdout)["result"]["isError"] is True
    assert json.loads(proc.stderr)["error"]["code"] == "tool_is_error"


def test_inspector_unreachable_exits_4(tmp_path):
    proc = run_inspector_cli("http://127.0.0.1:9/mcp", TOKEN, "tools/list", home=tmp_path)
    assert proc.returncode == 4, proc.stderr


# ----------------------------------------------------------------------------------------- mcp-remote
@pytest.mark.parametrize("header_via_env", [False, True], ids=["header-arg", "header-env"])
def test_mcp_remote_over_stdio(toy_url, tmp_path, header_via_env):
    with McpRemote(toy_url, TOKEN, header_via_env=header_via_env, home=tmp_path) as mr:
        init = mr.initialize()
        assert init["result"]["serverInfo"]["name"] == "poggio-toy"
        assert init["result"]["protocolVersion"] == "2025-06-18"  # mcp-remote forwards the host's version
        tools = mr.list_tools()["result"]["tools"]
        assert "echo" in {t["name"] for t in tools}
        called = mr.call_tool("add", {"a": 2, "b": 40})["result"]
        assert called["content"] == [{"type": "text", "text": "42"}]
        err = mr.call_tool("test_error_handling")["result"]
        assert err["isError"] is True
    assert mr.proc is not None and mr.proc.returncode == 0  # stdin EOF -> clean shutdown
    # its own state went into the temp HOME, not ~/.mcp-auth
    assert (tmp_path / ".mcp-auth" / "mcp-remote-v1").is_dir()


def test_mcp_remote_wrong_token_fails_fast(toy_url, tmp_path):
    # On 401 mcp-remote starts OAuth discovery; with no OAuth endpoints (404) it gives up and exits.
    start = time.monotonic()
    with McpRemote(toy_url, "wrong", home=tmp_path) as mr:
        with pytest.raises(McpRemoteError):
            mr.initialize(timeout=30)
    assert time.monotonic() - start < 30
    assert mr.proc is not None and mr.proc.returncode not in (0, None)


# ---------------------------------------------------------------------------------------- conformance
def test_conformance_tools_only_scenarios_pass(toy_url, tmp_path):
    rc, output, summary = run_conformance(toy_url, TOKEN, TOOLS_ONLY_SCENARIOS, home=tmp_path)
    failing = {n: r["checks"] for n, r in summary["scenarios"].items() if not r["ok"]}
    assert rc == 0 and not failing, (failing, output[-3000:])
    assert set(summary["scenarios"]) == set(TOOLS_ONLY_SCENARIOS)
    assert summary["scenarios"]["dns-rebinding-protection"]["passed"] == 2  # undici path got the token too


def test_conformance_full_suite_prints_its_summary(toy_url, tmp_path):
    rc, output, summary = run_conformance(toy_url, TOKEN, home=tmp_path)
    assert rc == 1  # the toy has no prompts/resources/completion/logging/sampling/elicitation
    assert summary["total_line"] == f"Total: {summary['passed']} passed, {summary['failed']} failed"
    assert len(summary["scenarios"]) == 30
    for name in TOOLS_ONLY_SCENARIOS + ["tools-list", "resources-list", "prompts-list"]:
        assert summary["scenarios"][name]["ok"], (name, summary["scenarios"][name])
    # JSON responses cannot carry notifications sent during a tool call
    assert summary["scenarios"]["tools-call-with-progress"]["ok"] is False


def test_conformance_without_token_is_rejected(toy_url, tmp_path):
    rc, _, summary = run_conformance(toy_url, None, ["server-initialize"], home=tmp_path)
    assert rc == 1 and summary["scenarios"]["server-initialize"]["failed"] == 1


def test_conformance_pending_json_schema_2020_12(toy_url, tmp_path):
    rc, output, summary = run_conformance(toy_url, TOKEN, ["json-schema-2020-12"], home=tmp_path)
    assert rc == 0 and summary["scenarios"]["json-schema-2020-12"]["passed"] == 4, output[-3000:]


def test_conformance_baseline_counts_warnings_as_failures(toy_url, tmp_path):
    baseline = tmp_path / "baseline.yml"
    baseline.write_text("server:\n  - tools-call-with-progress\n")
    # server-sse-multiple-streams only WARNs on a stateless server (no session id): passes alone...
    rc, _, summary = run_conformance(toy_url, TOKEN, ["server-sse-multiple-streams"], home=tmp_path)
    assert rc == 0 and summary["scenarios"]["server-sse-multiple-streams"]["clean"] is False
    # ...but with --expected-failures it is an "unexpected failure" unless listed.
    rc, output, _ = run_conformance(toy_url, TOKEN, ["server-sse-multiple-streams"], home=tmp_path,
                                    expected_failures=baseline)
    assert rc == 1 and "Unexpected failures (not in baseline)" in output
    rc, output, _ = run_conformance(toy_url, TOKEN, ["tools-call-with-progress"], home=tmp_path,
                                    expected_failures=baseline)
    assert rc == 0 and "Baseline check passed" in output


def test_conformance_progress_and_logging_over_sse(toy_sse_url, tmp_path):
    scenarios = ["tools-call-with-progress", "tools-call-with-logging", "logging-set-level"]
    rc, output, summary = run_conformance(toy_sse_url, TOKEN, scenarios, home=tmp_path)
    assert rc == 0, output[-3000:]
    assert all(summary["scenarios"][s]["ok"] for s in scenarios)
