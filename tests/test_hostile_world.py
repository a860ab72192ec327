"""Issue 11, "hostile-world ready": what an anonymous caller, a token holder sending junk, a browser
and a misspelling model meet at the MCP server. A real server process over real HTTP, both protocol
generations (2026-07-28 sessionless with routing headers; 2025-11-25 with ``initialize``) where the
answer differs."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import Mcp
from instances import ServerProcess, make_instance

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.security.token_format import generate
from poggio.storage.db import bind

ACCEPT = "application/json, text/event-stream"
MODERN, LEGACY = "2026-07-28", "2025-11-25"
APP_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp("hostile"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        registry = PackRegistry.load()
        upgrade(registry)
        ws = demo.build(registry, "acme", accounts=30, seed=3).workspace
        tokens = [TokenService().create(ws, f"t{i}", Actor.cli()).plaintext for i in range(3)]
    server = ServerProcess(inst, extra_env={"POGGIO_CORS_ORIGINS": APP_ORIGIN})
    yield server, tokens, inst
    server.stop()


def rpc(
    served,
    method: str,
    params: dict | None = None,
    version: str = LEGACY,
    headers: dict | None = None,
    token: str | None = None,
) -> httpx.Response:
    server, tokens, _ = served
    params = dict(params or {})
    head = {
        "Authorization": f"Bearer {token or tokens[0]}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": version,
    }
    if version == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        head["Mcp-Method"] = method
        if "name" in params:
            head["Mcp-Name"] = params["name"]
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return httpx.post(server.mcp_url, json=body, headers={**head, **(headers or {})}, timeout=10)


def initialize(served) -> httpx.Response:
    return rpc(
        served,
        "initialize",
        {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
    )


def result_text(payload: dict) -> str:
    return "\n".join(c.get("text", "") for c in payload["result"]["content"])


# -- item 2: junk method names do not grow the database ----------------------------------------------------
def test_unknown_methods_are_counted_under_one_bucket(served):
    from poggio.storage.models import ApiToken, TokenUsage

    server, tokens, inst = served
    token = tokens[1]
    for i in range(40):
        assert rpc(served, f"junk/method-{i}", token=token).status_code in (200, 404)
    rpc(served, "tools/list", token=token)
    with bind(inst.database_url).connection_context():
        token_id = ApiToken.get(ApiToken.name == "t1").id
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = {u.tool: u.calls for u in TokenUsage.select().where(TokenUsage.token == token_id)}
            if sum(rows.values()) >= 41:
                break
            time.sleep(0.2)
    assert sum(rows.values()) == 41, rows
    assert len(rows) <= 2 and rows["tools/list"] == 1, sorted(rows)[:10]


def test_activity_breakdown_is_bounded(instance):
    """Rows already stored (from before the bucket) still render as a bounded list."""
    import datetime as dt

    from poggio.identity.workspaces import create_workspace
    from poggio.records.usage_report import MAX_TOOLS, by_tool
    from poggio.storage.db import utcnow
    from poggio.storage.models import TokenUsage

    ws = create_workspace("acme", "Acme", True, Actor.cli())
    issued = TokenService().create(ws, "busy", Actor.cli())
    today = utcnow().date()
    TokenUsage.insert_many(
        [
            {
                "token": issued.token.id,
                "day": today - dt.timedelta(days=i % 3),
                "tool": f"junk-{i}",
                "calls": 1 + i % 7,
                "errors": i % 2,
            }
            for i in range(500)
        ]
    ).execute()
    rows = by_tool(issued.token.id)
    assert len(rows) == MAX_TOOLS + 1
    assert sum(r[1] for r in rows) == sum(1 + i % 7 for i in range(500))
    assert "other" in rows[-1][0]


# -- item 7: /metrics and /readyz tell anonymous callers nothing ---------------------------------------------
def test_metrics_are_not_public_by_default(served):
    server, _, _ = served
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 404 and "poggio_mcp" not in response.text


def test_readyz_and_healthz_say_status_only(served):
    server, _, _ = served
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


# -- item 9: redaction keeps uvicorn's access-log line ----------------------------------------------------------
def test_access_log_line_with_a_token_is_written_redacted(served):
    server, _, _ = served
    leaked = generate()
    assert httpx.get(f"{server.url}/healthz", params={"token": leaked}).status_code == 200
    time.sleep(0.3)
    log = server.log()
    assert leaked not in log
    lines = [line for line in log.splitlines() if "/healthz?token=pgo_" in line]
    assert lines and "[redacted]" in lines[-1] and "200" in lines[-1], log[-2000:]
    assert "Logging error" not in log


# -- items 11 and 12: arguments checked, in plain words --------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_unknown_argument_is_a_tool_error_naming_it(served, mode):
    server, tokens, _ = served
    client = Mcp(server.mcp_url, tokens[0], mode)
    result = client.call("search_accounts", {"bogus": 1, "limit": 2})
    text = "\n".join(c.text for c in result.content)
    assert result.is_error and "bogus" in text and "query" in text, text
    schema = {t.name: t.input_schema for t in client.tools()}
    assert all(s.get("additionalProperties") is False for s in schema.values()), schema


@pytest.mark.parametrize("version", [LEGACY, MODERN])
@pytest.mark.parametrize(
    "arguments,words",
    [
        ({"limit": "x"}, ["limit", "integer"]),
        ({"limit": 1000}, ["limit", "100"]),
        ({"stage": "dreaming"}, ["stage", "prospecting", "won"]),
    ],
)
def test_validation_errors_are_plain_words(served, version, arguments, words):
    tool = "list_opportunities" if "stage" in arguments else "search_accounts"
    payload = rpc(served, "tools/call", {"name": tool, "arguments": arguments}, version=version).json()
    text = result_text(payload)
    assert payload["result"]["isError"] is True
    for word in words:
        assert word in text, text
    for internal in ("Arguments", "pydantic", "errors.pydantic.dev", "input_type", "[type="):
        assert internal not in text, text


# -- item 13: capabilities are honest ------------------------------------------------------------------------------
def test_capabilities_advertise_what_is_served(served):
    """Tools and the packs' prompts (neither list changes while the process runs), completion, and
    (2025-era) logging/setLevel; resources, whose updates a stateless server cannot send."""
    legacy = initialize(served).json()["result"]["capabilities"]
    modern = rpc(served, "server/discover", version=MODERN).json()["result"]["capabilities"]
    for caps in (legacy, modern):
        # resources are served; their updates cannot reach a client of a stateless server
        assert caps["resources"] == {"subscribe": False, "listChanged": False}, caps
        assert "completions" in caps, caps
        assert caps["tools"].get("listChanged") in (None, False), caps
        assert caps["prompts"].get("listChanged") in (None, False), caps
    assert "logging" in legacy, legacy


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_unknown_prompt_is_not_error_code_zero(served, version):
    error = rpc(served, "prompts/get", {"name": "nope"}, version=version).json()["error"]
    assert error["code"] == -32602 and "prompt" in error["message"], error


# -- item 14: cursors and protocol versions --------------------------------------------------------------------------
@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_tools_list_with_an_invalid_cursor_is_invalid_params(served, version):
    payload = rpc(served, "tools/list", {"cursor": "garbage"}, version=version).json()
    assert payload.get("error", {}).get("code") == -32602, str(payload)[:300]
    assert "cursor" in payload["error"]["message"]


def test_unsupported_protocol_version_names_the_supported_ones(served):
    response = rpc(served, "ping", version="1999-01-01")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "1999-01-01" in error["message"] and LEGACY in error["message"] and MODERN in error["message"], error
    assert LEGACY in error["data"]["supported"] and MODERN in error["data"]["supported"]


# -- item 15: a non-Bearer scheme is a challenge without an error code ----------------------------------------------
def test_basic_auth_gets_a_bare_challenge(served):
    server, _, _ = served
    response = httpx.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": "Basic dXNlcjpwYXNz", "Accept": ACCEPT},
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "error=" not in challenge, challenge


# -- item 16: no idle event stream ------------------------------------------------------------------------------------
@pytest.mark.parametrize("authorized", [True, False])
def test_get_mcp_is_405_at_once(served, authorized):
    server, tokens, _ = served
    headers = {"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY}
    if authorized:
        headers["Authorization"] = f"Bearer {tokens[0]}"
    started = time.monotonic()
    response = httpx.get(server.mcp_url, headers=headers, timeout=5)
    assert response.status_code == 405 and time.monotonic() - started < 2
    assert "POST" in response.headers["allow"] and "GET" not in response.headers["allow"]


# -- item 17: CORS -----------------------------------------------------------------------------------------------------
def preflight(
    served, origin: str, headers: str = "authorization, content-type, mcp-protocol-version"
) -> httpx.Response:
    server, _, _ = served
    return httpx.options(
        server.mcp_url,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers},
    )


def test_cors_preflight_from_an_allowed_origin(served):
    wanted = ["authorization", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id"]
    response = preflight(served, APP_ORIGIN, ", ".join(wanted))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    allowed = response.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in wanted), allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_cors_answer_exposes_the_challenge(served):
    server, _, _ = served
    refused = httpx.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Origin": APP_ORIGIN, "Accept": ACCEPT},
    )
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
    ok = rpc(served, "ping", headers={"Origin": APP_ORIGIN})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    "origin",
    [
        APP_ORIGIN,
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil.example",
        "http://localhost",
    ],
)
def test_cors_and_the_origin_check_agree(served, origin):
    by_cors = preflight(served, origin).headers.get("access-control-allow-origin") == origin
    by_origin_check = rpc(served, "ping", headers={"Origin": origin}).status_code != 403
    assert by_cors == by_origin_check, (origin, by_cors, by_origin_check)


def test_cors_layer_serves_extra_routes_for_any_origin():
    """The OAuth discovery routes (public metadata) ride on the same CORS layer, open to any origin."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from mcp_server.cors import public_route

    async def metadata(request):
        return JSONResponse({"resource": "x"})

    app = Starlette(routes=[public_route("/.well-known/oauth-protected-resource", metadata)])
    with TestClient(app) as client:
        pre = client.options(
            "/.well-known/oauth-protected-resource",
            headers={"Origin": "https://anything.example", "Access-Control-Request-Method": "GET"},
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] in (
            "*",
            "https://anything.example",
        )
        got = client.get("/.well-known/oauth-protected-resource", headers={"Origin": "https://anything.example"})
        assert got.json() == {"resource": "x"} and got.headers["access-control-allow-origin"] == "*"
        assert isinstance(app.routes[0], Route)
