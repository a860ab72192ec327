"""The gate (mcp_server/gate.py): every MCP request passes it once, whichever path answers it, and
its body is read and parsed once; the request's OpenTelemetry span (mcp_server/tracing.py).

A real server (uvicorn, in this process so that the test can read the gate's parse count and the
spans of an in-memory exporter) and real clients over HTTP: the SDK's MCP client, and httpx for
requests an SDK client would not send.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import anyio
import httpx
import pytest
import uvicorn
from helpers import mcp_client
from instances import free_port, make_instance
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from poggio.records.audit import Actor

ACCEPT = "application/json, text/event-stream"
LEGACY, MODERN = "2025-11-25", "2026-07-28"
WRITE_LIMIT = 3
MAX_BODY = 20_000
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class InProcessServer:
    """``create_app`` under uvicorn in a thread of this process; ``gate`` is the app's gate."""

    def __init__(self, inst, tracer_provider=None, extra_env: dict[str, str] | None = None):
        from mcp_server.app import create_app
        from poggio.settings import load_settings

        os.environ.update({**inst.env, **(extra_env or {})})
        self.app = create_app(load_settings(), tracer_provider=tracer_provider)
        front = self.app.app
        self.gate = front.gate
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # the server says when it listens
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process MCP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A demo instance (SQLite, 30 accounts) with tokens: every pack ("full"), accounts only, a
    writer, and a writer whose token expires within days (the lean path leaves its calls to the
    SDK, which adds the expiry warning), served in this process with an in-memory span exporter."""
    saved = dict(os.environ)  # the instance's and the server's settings: for this module only
    inst = make_instance(tmp_path_factory.mktemp("gate"), "sqlite")
    db = inst.activate()
    subprocess.run(
        [sys.executable, "-m", "poggio", "demo", "--accounts", "30"],
        env={**os.environ, **inst.env},
        check=True,
        capture_output=True,
    )
    from poggio.identity.tokens import TokenService
    from poggio.identity.workspaces import get_workspace

    with db.connection_context():
        ws = get_workspace("acme")
        service = TokenService()
        soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=3)
        tokens = {
            "full": service.create(ws, "full", Actor.cli(), packs=None).plaintext,
            "accounts": service.create(ws, "accounts", Actor.cli(), packs=["accounts"]).plaintext,
            "writer": service.create(ws, "writer", Actor.cli(), packs=["accounts:write", "revenue:write"]).plaintext,
            "expiring": service.create(
                ws, "expiring", Actor.cli(), packs=["accounts:write", "revenue:write"], expires=soon
            ).plaintext,
        }
        workspace_id = ws.id
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = InProcessServer(
        inst,
        tracer_provider=provider,
        extra_env={"POGGIO_WRITE_RATE_LIMIT": f"{WRITE_LIMIT}/hour", "POGGIO_MAX_BODY_BYTES": str(MAX_BODY)},
    )
    yield server, tokens, exporter, workspace_id
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


def post(server, token: str, body, headers: dict[str, str] | None = None, raw: bytes | None = None):
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(
        server.url,
        content=content,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            "MCP-Protocol-Version": LEGACY,
            **(headers or {}),
        },
        timeout=30,
    )


def call(name: str, arguments: dict, id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    "label, token, body, headers",
    [
        ("lean tools/call", "full", call("get_account", {"domain": "example.com"}), {}),
        ("lean tools/list", "full", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, {}),
        ("SDK: a method the lean path declines", "full", {"jsonrpc": "2.0", "id": 3, "method": "ping"}, {}),
        ("SDK: an unknown tool", "full", call("no_such_tool", {}), {}),
        (
            "SDK: a browser's request (Origin)",
            "full",
            call("get_account", {"domain": "example.com"}),
            {"Origin": "http://127.0.0.1:9"},
        ),
        ("SDK: a batch", "full", [call("get_account", {"domain": "example.com"})], {}),
        ("SDK: a token about to expire", "expiring", call("get_account", {"domain": "example.com"}), {}),
        ("refused out of scope", "accounts", call("get_revenue_summary", {"account_domain": "example.com"}), {}),
    ],
)
def test_every_request_is_parsed_once(world, label, token, body, headers):
    """Whichever path answers (the lean path, or the SDK behind the stack after the lean path
    declined), the gate reads and parses the body once, and the request gets one answer."""
    server, tokens, _, _ = world
    before = server.gate.parses
    response = post(server, tokens[token], body, headers)
    assert response.status_code < 500, (label, response.status_code, response.text)
    assert server.gate.parses == before + 1, label


def test_a_body_over_the_limit_is_refused_once_unparsed(world):
    """A body over POGGIO_MAX_BODY_BYTES: the SDK's 413, the body never parsed, nothing counted
    against the write limit."""
    server, tokens, _, _ = world
    before = server.gate.parses
    big = call("create_account", {"name": "x" * (MAX_BODY + 10), "domain": "big.example"})
    response = post(server, tokens["writer"], big)
    assert response.status_code == 413, response.text
    assert server.gate.parses == before


def test_the_write_limit_is_counted_once_on_either_path(world):
    """A write call that passes the gate at the front door and is then answered by the SDK (the
    lean path leaves a token about to expire to it) counts once against the write limit: exactly
    WRITE_LIMIT calls pass, the next is refused 429."""
    server, tokens, _, _ = world
    statuses = []
    for n in range(WRITE_LIMIT + 1):
        body = call("update_account", {"domain": "example.com", "employees": 100 + n}, id=n + 1)
        statuses.append(post(server, tokens["expiring"], body).status_code)
    assert statuses == [200] * WRITE_LIMIT + [429], statuses


def test_visible_tools_decide_the_listing(world):
    """tools/list shows exactly Gate.visible_tools of the caller."""
    server, tokens, _, _ = world
    response = post(server, tokens["accounts"], {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    listed = {t["name"] for t in response.json()["result"]["tools"]}
    assert listed and all(not name.startswith("update_") for name in listed)
    assert "get_revenue_summary" not in listed
    assert "get_account" in listed


def spans_of(exporter, trace_id: str):
    return [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]


def wait_for_spans(exporter, trace_id: str, count: int):
    """The spans of ``trace_id``, once ``count`` of them have ended (the answer is sent before the
    request's span ends)."""
    deadline = time.monotonic() + 10
    while len(found := spans_of(exporter, trace_id)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} spans of {trace_id}, wanted {count}")
        time.sleep(0.01)
    return found


def no_token_anywhere(spans, tokens: dict[str, str]) -> None:
    for span in spans:
        for key, value in (span.attributes or {}).items():
            for token in tokens.values():
                assert token not in str(value) and token[-8:] not in str(value), (span.name, key)


def test_a_clients_trace_continues_into_poggio_through_meta(world):
    """The SDK's MCP client sends traceparent in params._meta: the request's span is its child, with
    the method, the tool, the outcome and the workspace; the tool's database work is a child span."""
    server, tokens, exporter, workspace_id = world
    trace_id = os.urandom(16).hex()
    traceparent = f"00-{trace_id}-{PARENT_ID}-01"

    async def go():
        async with mcp_client(server.url, tokens["full"]) as client:
            result = await client.call_tool("get_account", {"domain": "example.com"}, meta={"traceparent": traceparent})
            assert not result.is_error

    anyio.run(go)
    spans = wait_for_spans(exporter, trace_id, 2)
    request = next(s for s in spans if s.name == "mcp tools/call get_account")
    assert format(request.parent.span_id, "016x") == PARENT_ID
    attributes = dict(request.attributes)
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "get_account"
    assert attributes["poggio.outcome"] == "ok"
    assert attributes["poggio.workspace.id"] == workspace_id
    assert attributes["http.response.status_code"] == 200
    database = next(s for s in spans if s.name == "db get_account")
    assert database.parent.span_id == request.context.span_id
    assert database.attributes["db.system.name"] == "sqlite"
    no_token_anywhere(spans, tokens)


@pytest.mark.parametrize(
    "token, body, outcome, status",
    [
        ("full", call("get_account", {}), "tool_error", 200),
        ("accounts", call("get_revenue_summary", {"account_domain": "example.com"}), "refused", 200),
        ("full", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "ok", 200),
    ],
)
def test_the_http_traceparent_continues_and_the_outcome_is_on_the_span(world, token, body, outcome, status):
    """The W3C traceparent HTTP header continues the trace too; each outcome is on the span."""
    server, tokens, exporter, _ = world
    trace_id = os.urandom(16).hex()
    response = post(server, tokens[token], body, {"traceparent": f"00-{trace_id}-{PARENT_ID}-01"})
    assert response.status_code == status
    (span,) = [s for s in wait_for_spans(exporter, trace_id, 1) if s.name.startswith("mcp ")]
    assert span.attributes["poggio.outcome"] == outcome
    assert span.attributes["http.response.status_code"] == status
    assert format(span.parent.span_id, "016x") == PARENT_ID
    no_token_anywhere([span], tokens)


def test_a_refusal_before_any_tool_is_on_the_span(world):
    """Over the write limit: the gate's 429 is the span's status and outcome."""
    server, tokens, exporter, _ = world
    trace_id = os.urandom(16).hex()
    header = {"traceparent": f"00-{trace_id}-{PARENT_ID}-01"}
    for n in range(WRITE_LIMIT + 1):
        response = post(
            server, tokens["writer"], call("update_account", {"domain": "example.com", "employees": n}), header
        )
    assert response.status_code == 429
    spans = [s for s in wait_for_spans(exporter, trace_id, WRITE_LIMIT + 1) if s.name.startswith("mcp ")]
    last = max(spans, key=lambda s: s.end_time)
    assert last.attributes["http.response.status_code"] == 429
    assert last.attributes["poggio.outcome"] == "rate_limited"


def test_a_refused_credential_is_on_a_span_without_it(world):
    """A token that is no token: 401, on a span of its own (outcome refused), the token nowhere."""
    server, tokens, exporter, _ = world
    trace_id = os.urandom(16).hex()
    bogus = "pgo_" + "x" * 40
    response = post(
        server,
        bogus,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"traceparent": f"00-{trace_id}-{PARENT_ID}-01", "Mcp-Method": "tools/list"},
    )
    assert response.status_code == 401
    (span,) = wait_for_spans(exporter, trace_id, 1)
    assert span.name == "mcp tools/list"
    assert span.attributes["http.response.status_code"] == 401
    assert span.attributes["poggio.outcome"] == "refused"
    no_token_anywhere([span], {**tokens, "bogus": bogus})


def test_tracing_is_off_unless_configured():
    from mcp_server.tracing import Tracing, wanted

    assert not wanted({})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert wanted({"OTEL_TRACES_EXPORTER": "console"})
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("OTEL_")}
    try:
        assert Tracing.configured() is None
    finally:
        os.environ.update(saved)


def test_an_unknown_exporter_is_named():
    from mcp_server.tracing import provider_from_environment

    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="http/protobuf"):
        provider_from_environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
