"""The clients people really use, against a real Poggio MCP server (real token, database and packs):
MCP Inspector's CLI, mcp-remote (the stdio bridge of desktop clients) and the official conformance
suite's scenarios that apply to Poggio's own tools."""

from __future__ import annotations

import json

import pytest

from instances import ServerProcess, make_instance
from node_tools import McpRemote, run_conformance, run_inspector_cli
from poggio import demo
from poggio.audit import Actor
from poggio.plugins import PackRegistry
from poggio.schema import upgrade
from poggio.tokens import TokenService

pytestmark = pytest.mark.clients
TOOLS = {"search_accounts", "get_account", "search_contacts", "get_contact", "get_revenue_summary",
         "list_opportunities"}


@pytest.fixture(scope="module")
def poggio(tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp("clients"), "sqlite")
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        ws = demo.build(registry, "acme", accounts=30).workspace
        token = TokenService().create(ws, "clients", Actor.cli()).plaintext
    server = ServerProcess(inst)
    yield server, token
    server.stop()


def test_inspector_lists_and_calls_tools(poggio, tmp_path):
    server, token = poggio
    listed = run_inspector_cli(server.mcp_url, token, "tools/list", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["result"]["tools"]} == TOOLS
    called = run_inspector_cli(server.mcp_url, token, "tools/call", "get_account", {"domain": "example.com"},
                               home=tmp_path)
    assert called.returncode == 0, called.stderr
    assert "Example Corp" in called.stdout
    print(f"\nMCP Inspector: tools/list ok ({len(TOOLS)} tools), tools/call get_account ok")


def test_inspector_refuses_a_wrong_token(poggio, tmp_path):
    server, _ = poggio
    wrong = run_inspector_cli(server.mcp_url, "pgo_" + "0" * 33, "tools/list", home=tmp_path)
    assert wrong.returncode != 0
    missing = run_inspector_cli(server.mcp_url, None, "tools/list", home=tmp_path)
    assert missing.returncode != 0


@pytest.mark.parametrize("header_via_env", [False, True], ids=["header", "header-from-env"])
def test_mcp_remote_bridges_stdio_to_poggio(poggio, tmp_path, header_via_env):
    server, token = poggio
    with McpRemote(server.mcp_url, token, header_via_env=header_via_env, home=tmp_path) as bridge:
        init = bridge.initialize()
        assert init["result"]["serverInfo"]["name"] == "Poggio", init
        tools = bridge.list_tools()["result"]["tools"]
        assert {t["name"] for t in tools} == TOOLS
        answer = bridge.call_tool("get_account", {"domain": "example.com"})["result"]
        assert not answer.get("isError") and "Example Corp" in answer["content"][0]["text"]
    print(f"\nmcp-remote ({'env' if header_via_env else 'argv'} header): initialize, tools/list, tools/call ok")


def test_conformance_scenarios_that_apply_to_poggios_tools(poggio, tmp_path):
    server, token = poggio
    scenarios = ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"]
    rc, output, summary = run_conformance(server.mcp_url, token, scenarios, home=tmp_path)
    failed = {name: r for name, r in summary["scenarios"].items() if not r["ok"]}
    print(f"\nconformance: {summary['passed']} checks passed, {summary['failed']} failed "
          f"over {', '.join(scenarios)}")
    assert not failed and rc == 0, (failed, output[-3000:])
