"""Hostile or broken HTTP input to the MCP server: the right status or JSON-RPC error, never a 500 or
a traceback, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest
from instances import ServerProcess

from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor

ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from instances import make_instance

    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade

    inst = make_instance(tmp_path_factory.mktemp("bad-input"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        ws = create_workspace("acme", "Acme", True, Actor.cli())
        token = TokenService().create(ws, "t", Actor.cli()).plaintext
    server = ServerProcess(inst, extra_env={"POGGIO_MAX_BODY_BYTES": "65536"})
    yield server, token
    server.stop()


def send(served, content: bytes | str, headers: dict | None = None) -> httpx.Response:
    server, token = served
    base = {
        "Authorization": f"Bearer {token}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }
    return httpx.post(server.mcp_url, content=content, headers={**base, **(headers or {})}, timeout=10)


def rpc(method: str, params=None, id=1) -> str:
    body = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


CASES = [
    ("malformed JSON", b'{"jsonrpc": "2.0", "id": 1, "method": ', {}, {400}),
    ("not an object", b"[1, 2, 3]", {}, {400}),
    ("wrong jsonrpc version", json.dumps({"jsonrpc": "1.0", "id": 1, "method": "ping"}), {}, {400}),
    ("no method", json.dumps({"jsonrpc": "2.0", "id": 1}), {}, {400}),
    ("unknown method", rpc("tools/destroy"), {}, {200, 404}),
    ("unknown tool", rpc("tools/call", {"name": "drop_tables", "arguments": {}}), {}, {200}),
    (
        "wrong argument type",
        rpc("tools/call", {"name": "search_accounts", "arguments": {"limit": {"$gt": 1}}}),
        {},
        {200},
    ),
    ("arguments not an object", rpc("tools/call", {"name": "search_accounts", "arguments": "x"}), {}, {200, 400}),
    ("huge integer", rpc("tools/call", {"name": "search_accounts", "arguments": {"min_employees": 10**40}}), {}, {200}),
    ("wrong content type", rpc("ping"), {"Content-Type": "text/plain"}, {400, 415}),
    ("wrong accept", rpc("ping"), {"Accept": "text/html"}, {406}),
    ("unsupported protocol version", rpc("ping"), {"MCP-Protocol-Version": "1999-01-01"}, {400}),
    (
        "oversized body",
        rpc("tools/call", {"name": "search_accounts", "arguments": {"query": "x" * 100_000}}),
        {},
        {413},
    ),
    ("invalid utf-8", b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}', {}, {400}),
]


@pytest.mark.parametrize("label,content,headers,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_requests_get_clear_answers(served, label, content, headers, expected):
    response = send(served, content, headers)
    assert response.status_code in expected, (label, response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code == 200:
        payload = response.json()
        assert "error" in payload or payload.get("result", {}).get("isError") is True, payload
    assert send(served, rpc("ping")).status_code == 200  # and the server keeps serving


def test_missing_protocol_version_header_still_served_as_default(served):
    server, token = served
    response = httpx.post(
        server.mcp_url,
        content=rpc("ping"),
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400) and "Traceback" not in response.text


def test_spoofed_host_and_origin(served):
    assert send(served, rpc("ping"), {"Host": "evil.example"}).status_code in (400, 403, 421)
    assert send(served, rpc("ping"), {"Origin": "https://evil.example"}).status_code == 403


def test_server_log_has_no_traceback_and_no_token(served):
    server, token = served
    log = server.log()
    assert token not in log
    assert "Traceback" not in log, log[-3000:]
