"""A throwaway bare MCP server (mcp 2.3) that proves the Node client harness works.

Not Poggio: it exists so that ``tests/clients/node_tools.py`` can be checked against a server we fully
control. It serves Streamable HTTP at ``/mcp`` (stateless, JSON responses by default, like Poggio)
behind a trivial bearer check, and implements the conformance suite's fixture tools that are quick to
add, with the exact contracts the suite checks (see ``conformance/SCENARIOS.md``).

Run: ``python tests/clients/_toy_server.py --port 0 --token secret`` — it prints ``READY <url>`` on
stdout once it accepts connections. ``--sse`` answers with SSE streams instead of JSON (so that
progress and log notifications sent during a tool call can reach the client); ``--stateful`` keeps
sessions (``Mcp-Session-Id``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import struct
import sys
import zlib

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    TextContent,
    TextResourceContents,
)


def _png_1x1_red() -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00\xff\x00\x00"  # filter byte + one RGB pixel
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def _wav_silence() -> str:
    rate, samples = 8000, 80  # 10 ms of 8-bit mono silence
    data = b"\x80" * samples
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
              + b"data" + struct.pack("<I", len(data)))
    return base64.b64encode(header + data).decode()


PNG = _png_1x1_red()
WAV = _wav_silence()


def build_server(*, logging_capability: bool = False) -> MCPServer:
    server = MCPServer("poggio-toy", version="0.0.1")
    if logging_capability:
        # MCPServer 2.3 registers no logging/setLevel (deprecated by the 2026-07-28 revision), so the
        # conformance scenarios logging-set-level and tools-call-with-logging get -32601 without it.
        import warnings

        from mcp.types import EmptyResult, SetLevelRequestParams

        async def set_level(ctx, params: SetLevelRequestParams) -> EmptyResult:
            return EmptyResult()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)

    @server.tool(description="Echo the given text back.")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> str:
        return str(a + b)

    # ---- conformance fixture tools (names and payloads are what the suite checks) ----
    @server.tool(description="Returns simple text (conformance: tools-call-simple-text).")
    def test_simple_text() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="This is a simple text response for testing.")])

    @server.tool(description="Returns a 1x1 PNG (conformance: tools-call-image).")
    def test_image_content() -> CallToolResult:
        return CallToolResult(content=[ImageContent(type="image", data=PNG, mime_type="image/png")])

    @server.tool(description="Returns a short WAV (conformance: tools-call-audio).")
    def test_audio_content() -> CallToolResult:
        return CallToolResult(content=[AudioContent(type="audio", data=WAV, mime_type="audio/wav")])

    @server.tool(description="Returns an embedded text resource (conformance: tools-call-embedded-resource).")
    def test_embedded_resource() -> CallToolResult:
        res = TextResourceContents(uri="test://embedded-resource", mime_type="text/plain",
                                   text="This is an embedded resource content.")
        return CallToolResult(content=[EmbeddedResource(type="resource", resource=res)])

    @server.tool(description="Returns text, image and resource (conformance: tools-call-mixed-content).")
    def test_multiple_content_types() -> CallToolResult:
        res = TextResourceContents(uri="test://mixed-content-resource", mime_type="application/json",
                                   text=json.dumps({"test": "data", "value": 123}))
        return CallToolResult(content=[
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG, mime_type="image/png"),
            EmbeddedResource(type="resource", resource=res),
        ])

    @server.tool(description="Always fails with isError (conformance: tools-call-error).")
    def test_error_handling() -> CallToolResult:
        return CallToolResult(is_error=True, content=[
            TextContent(type="text", text="This tool intentionally returns an error for testing")])

    @server.tool(description="Sends 3 info log notifications (conformance: tools-call-with-logging).")
    async def test_tool_with_logging(ctx: Context) -> str:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool(description="Reports progress 0/50/100 of 100 (conformance: tools-call-with-progress).")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step, value in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(value, 100)
        return "Tool with progress executed successfully"

    @server.tool(description="Tool with JSON Schema 2020-12 features")
    def json_schema_2020_12_tool(name: str = "", address: dict | None = None) -> str:
        return f"ok: {name} {address}"

    # conformance json-schema-2020-12 (pending suite) checks that $schema, $defs and
    # additionalProperties survive into tools/list; pydantic never emits $schema, so set it by hand.
    server._tool_manager.get_tool("json_schema_2020_12_tool").parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"type": "object",
                              "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }
    return server


class BearerGate:
    """Pure-ASGI check of ``Authorization: Bearer <token>`` on /mcp only (toy; Poggio has its own)."""

    def __init__(self, app, token: str, path: str = "/mcp"):
        self.app, self.expected, self.path = app, f"Bearer {token}".encode(), path

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/") == self.path:
            got = dict(scope["headers"]).get(b"authorization")
            if got != self.expected:
                body = b'{"error":"invalid_token","error_description":"missing or wrong bearer token"}'
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer error="invalid_token"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def build_app(token: str, *, sse: bool = False, stateful: bool = False, log_headers: bool = False,
              logging_capability: bool = False):
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    app = build_server(logging_capability=logging_capability).streamable_http_app(stateless_http=not stateful, json_response=not sse,
                                             transport_security=security)
    gated = BearerGate(app, token)
    if not log_headers:
        return gated

    async def logged(scope, receive, send):  # one JSON line per request on stderr: what clients really send
        if scope["type"] == "http":
            hdrs = {k.decode(): v.decode() for k, v in scope["headers"]}
            if "authorization" in hdrs:
                hdrs["authorization"] = hdrs["authorization"][:7] + "…"
            print("REQ " + json.dumps({"method": scope["method"], "path": scope["path"], "headers": hdrs}),
                  file=sys.stderr, flush=True)
        await gated(scope, receive, send)

    return logged


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--token", default="secret")
    p.add_argument("--sse", action="store_true", help="answer POSTs with SSE streams (default: JSON)")
    p.add_argument("--stateful", action="store_true")
    p.add_argument("--log-headers", action="store_true", help="log each request's headers on stderr")
    p.add_argument("--logging", action="store_true", help="also serve logging/setLevel (declares 'logging')")
    args = p.parse_args(argv)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    app = build_app(args.token, sse=args.sse, stateful=args.stateful, log_headers=args.log_headers,
                    logging_capability=args.logging)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.02)
        print(f"READY http://127.0.0.1:{port}/mcp", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
