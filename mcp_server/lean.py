"""The lean path: ``tools/list`` and ``tools/call`` POSTs answered without the SDK's per-request machinery.

For a stateless JSON-response POST the SDK builds a transport, a dispatcher, a connection and a
server task per request (legacy generation), or a dispatch context and a connection (2026-07-28),
then runs the handler kernel: ~1 ms of work around a tool that takes tenths of one. This path
answers the two hot methods itself, with the SDK's types, validators and serialisers
(``mcp_types``) and Poggio's own :class:`~mcp_server.binding.ScopeMiddleware` rules, and gives the
bytes, the HTTP status and the headers the SDK would give. Everything else, and every request this
path is not sure about (an odd envelope, a header to check, an error the SDK words), goes to the SDK
untouched: it *declines* and the SDK answers. ``tests/test_lean_path.py`` sends a corpus of
requests to both paths and requires the same answers.

What Poggio decides about a request (who calls, the write limit, the scope challenge, the tools a
caller may see and call, the record) is the gate's (:class:`~mcp_server.gate.Gate`), asked once per
request on either path: this path gets the body read and parsed by the gate (a
:class:`~mcp_server.gate.Passage`), and is parse → gate → run → serialise. Calls of write tools are
answered here too (their idempotency and write transaction are the tool's own, on either path).

The SDK's objects this reads are in :class:`SdkAdapter`, checked at start-up and by
``tests/test_lean_path.py::test_sdk_adapter_matches_the_installed_sdk``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson
import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as SdkToolError
from mcp.server.mcpserver.exceptions import UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    x_mcp_header_map,
)
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    SERVER_INFO_META_KEY,
    CallToolResult,
    TextContent,
)
from mcp_types import methods as surfaces
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_server.admission import client_name
from mcp_server.asgi import first_headers, send_answer
from mcp_server.binding import UNKNOWN_TOOL, ScopeMiddleware
from mcp_server.binding import _timed_out as timed_out
from mcp_server.gate import GATE, Gate, Passage
from mcp_server.metrics import Metrics
from mcp_server.prompting import accepts_sse, wants_stream
from mcp_server.sdk import lowlevel_server

log = logging.getLogger(__name__)

HOT = frozenset({"tools/list", "tools/call"})
ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
CALL_KEYS = {False: frozenset({"name", "arguments"}), True: frozenset({"name", "arguments", "_meta"})}
LIST_KEYS = {False: frozenset({"cursor"}), True: frozenset({"cursor", "_meta"})}
MAX_ID = 2**53  # ids beyond what every JSON reader keeps exactly go to the SDK
PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode("latin-1")
# where orjson and Python's json may write one float differently (1e+16 against 1e16, 5e-05 against
# 0.00005): a digit before an exponent, or a fraction below 1e-4. Looked for with every digit made a
# 0 (one C pass, then substring searches: a regular expression took longer than orjson's writing);
# text that merely looks so ("a3e5", "1.00005") only costs the slow way.
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
MAYBE_DIFFERENT = (b"0e", b"0E", b"0.00000")
NON_ASCII = re.compile(r"[^\x00-\x7e]")  # json.dumps escapes DEL (0x7f) too


def _escaped(match: re.Match) -> str:
    """DEL or a non-ASCII character as ``json.dumps`` writes it: ``\\u00fc``, a surrogate pair beyond the BMP."""
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


class Decline(Exception):
    """This request is the SDK's to answer."""


class SdkAdapter:
    """What the lean path needs of the SDK's server object beyond public functions, in one place.

    ``MCPServer._lowlevel_server`` is how the SDK documents mounting an MCPServer in an app of one's
    own; ``middleware``, ``cache_hints``, ``server_info_stamp`` and ``get_tool_input_schema`` are
    attributes of that low-level server. If a version of the SDK adds a middleware of its own, or
    cache hints for the tool methods, the lean path could no longer promise the SDK's answer: it
    refuses to start (and the adapter test fails) rather than answer differently."""

    KNOWN_MIDDLEWARE = frozenset({"OpenTelemetryMiddleware", "RequestStateBoundary", "ScopeMiddleware"})

    def __init__(self, server: MCPServer):
        self.lowlevel = lowlevel_server(server)
        self.server = server
        names = {type(m).__name__ for m in self.lowlevel.middleware}
        unknown = names - self.KNOWN_MIDDLEWARE
        if unknown:
            raise RuntimeError(f"the lean MCP path does not know the SDK middleware {sorted(unknown)}")
        if any(m in self.lowlevel.cache_hints for m in HOT):
            raise RuntimeError(
                "the SDK now sets cache hints on tools/list or tools/call: the lean path would not add them"
            )
        self.scope = next(m for m in self.lowlevel.middleware if isinstance(m, ScopeMiddleware))
        # the SDK hands out a deep copy per access, for callers that change it; this path only writes
        # it into an answer, so one copy serves every answer (and is never changed)
        self._stamp = self.lowlevel.server_info_stamp

    def server_info_stamp(self) -> dict[str, Any]:
        return self._stamp

    def input_schema(self, name: str) -> Any:
        lookup = self.lowlevel.get_tool_input_schema
        if lookup is None:  # MCPServer sets it; without it the Mcp-Param headers could not be told
            raise RuntimeError("the SDK's server no longer has get_tool_input_schema: the lean path cannot run")
        return lookup(name)


def _legacy_bytes(request_id: Any, result: dict[str, Any]) -> bytes:
    # what the legacy transport sends: JSONRPCResponse.model_dump_json(by_alias=True, exclude_unset=True)
    return (
        b'{"jsonrpc":"2.0","id":'
        + pydantic_core.to_json(request_id)
        + b',"result":'
        + pydantic_core.to_json(result)
        + b"}"
    )


def _compact_json(value: Any) -> bytes:
    """``json.dumps(value, separators=(",", ":")).encode()``, what the SDK's 2026-07-28 entry writes,
    byte for byte, at orjson's speed. The two disagree on non-ASCII text and DEL (``json.dumps``
    escapes them: so does this), on floats written with an exponent by one of them and on integers
    beyond 64 bits (which orjson refuses): for those the standard library writes it. (NaN never
    gets here: results are dumped in pydantic's JSON mode first, which writes it as null.)"""
    try:
        fast = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a type it does not write
        return json.dumps(value, separators=(",", ":")).encode()
    zeroed = fast.translate(DIGITS_AS_ZERO)
    if any(part in zeroed for part in MAYBE_DIFFERENT):
        return json.dumps(value, separators=(",", ":")).encode()
    if fast.isascii() and b"\x7f" not in fast:
        return fast
    return NON_ASCII.sub(_escaped, fast.decode()).encode()


def _modern_bytes(request_id: Any, result: dict[str, Any]) -> bytes:
    # what the 2026-07-28 entry sends: json.dumps of the response's model_dump, compact
    return b'{"jsonrpc":"2.0","id":' + _compact_json(request_id) + b',"result":' + _compact_json(result) + b"}"


DECLINED = "poggio.lean_declined"  # scope key: the front asked already, the SDK answers


def _allowed(value: str, patterns: list[str]) -> bool:
    """The SDK's Host and Origin rule (``TransportSecurityMiddleware``): an exact match, or a
    ``name:*`` pattern with any port."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


class LeanPath:
    """ASGI app in front of the SDK's endpoint (behind authentication); :meth:`answer` is what
    :class:`mcp_server.front.Front` calls before the Starlette stack."""

    def __init__(
        self,
        sdk_app,
        server: MCPServer,
        security: TransportSecuritySettings,
        max_body: int,
        metrics: Metrics,
        tools: dict[str, Tool],
        gate: Gate,
    ):
        self.sdk_app = sdk_app
        self.served, self.declined = metrics.lean.labels("served"), metrics.lean.labels("declined")
        self.sdk = SdkAdapter(server)
        self.server = server
        self.scope_rules: ScopeMiddleware = self.sdk.scope
        self.security = security
        self.max_body = max_body
        # the SDK's Tool objects, built by Tool.from_function exactly as MCPServer.add_tool builds its own
        self.tools = tools
        self.gate = gate
        self._lists: dict[tuple[str, frozenset[str]], bytes] = {}  # tools/list answers as bytes
        # tools that report progress or log: a call that asks for their notices goes to the SDK
        self._reporting = {t.name: t for t in self.scope_rules.registry.tools() if t.progress or t.logs}
        # tools whose input schema asks for Mcp-Param headers: the SDK checks those, so their calls go there
        self._param_headers = {
            spec.name
            for spec in self.scope_rules.registry.tools()
            if x_mcp_header_map(self.sdk.input_schema(spec.name) or {})
        }

    def may_answer(self, scope) -> bool:
        """Whether a POST is worth reading for this path (else it goes to the SDK as it came)."""
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit() or int(value) > self.max_body:
                    return False
            elif key.startswith(PARAM_PREFIX):
                return False
        return True

    async def __call__(self, scope, receive, send):
        """In the stack, behind :class:`~mcp_server.gate.GateMiddleware`: the request's passage is
        in its scope, and ``receive`` replays the body it read."""
        passage = scope.get(GATE)
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get(DECLINED) or passage is None:
            return await self.sdk_app(scope, receive, send)
        answer = None
        if passage.whole and self.may_answer(scope):
            answer = await self.answer(scope, first_headers(scope), passage)
        if answer is None:
            self.declined.inc()
            return await self.sdk_app(scope, receive, send)
        await send_answer(send, answer)

    async def answer(self, scope, headers: dict[bytes, bytes], passage: Passage):
        """``(status, headers, payload)`` for a hot request this path is sure of, else None (the
        SDK's to answer). Counts what it serves."""
        try:
            answer = await self._answer(scope, headers, passage)
        except Decline:
            return None
        self.served.inc()
        return answer

    async def _answer(self, scope, headers: dict[bytes, bytes], passage: Passage):
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if content_type.split(";")[0].strip() != "application/json":
            raise Decline  # the SDK's two checks disagree on odd spellings: let it answer them
        if self.security.enable_dns_rebinding_protection:  # the SDK's TransportSecurityMiddleware rules
            host = headers.get(b"host", b"").decode("latin-1")
            if not host or not _allowed(host, self.security.allowed_hosts):
                raise Decline
            origin = headers.get(b"origin", b"").decode("latin-1")
            if origin and not _allowed(origin, self.security.allowed_origins):
                raise Decline
        accepted = [
            t.strip().split(";")[0].strip().lower() for t in headers.get(b"accept", b"").decode("latin-1").split(",")
        ]
        if not ("*/*" in accepted or "application/json" in accepted or "application/*" in accepted):
            raise Decline  # the SDK's check_accept_headers, its JSON half
        header_version = headers.get(b"mcp-protocol-version")
        version = None if header_version is None else header_version.decode("latin-1")
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        if modern and version not in MODERN_PROTOCOL_VERSIONS:
            raise Decline
        if not passage.exact:
            raise Decline  # no JSON, or what the SDK reads its own way: it words the answer
        decoded = passage.message
        if not isinstance(decoded, dict) or not decoded.keys() <= ENVELOPE_KEYS or decoded.get("jsonrpc") != "2.0":
            raise Decline
        request_id, method, params = decoded.get("id"), decoded.get("method"), decoded.get("params")
        if (
            method not in HOT
            or type(request_id) not in (int, str)
            or (type(request_id) is int and abs(request_id) > MAX_ID)
        ):
            raise Decline
        if params is not None and not isinstance(params, dict):
            raise Decline
        params = params or {}
        if not params.keys() <= (CALL_KEYS if method == "tools/call" else LIST_KEYS)[modern]:
            raise Decline
        client = None
        if modern:
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            if find_duplicated_routing_header(pairs) is not None:
                raise Decline
            verdict = classify_inbound_request(decoded, headers=dict(pairs))
            if isinstance(verdict, InboundLadderRejection):
                raise Decline
            version = verdict.protocol_version
            client = client_name(verdict.client_info)
        else:
            version = version or DEFAULT_NEGOTIATED_VERSION
        principal = passage.principal
        if principal is None or principal.expiry_meta() is not None:
            raise Decline  # a credential about to expire gets its warning in _meta: the SDK path adds it
        try:
            surfaces.validate_client_request(method, version, decoded.get("params"))
        except (ValidationError, KeyError, ValueError):
            raise Decline from None
        name = params.get("name")  # a string here: validate_client_request checked the params
        reporting = self._reporting.get(name) if method == "tools/call" and isinstance(name, str) else None
        if reporting is not None and wants_stream(reporting, params, modern, accepts_sse(headers)):
            raise Decline  # its notices ride an event stream: the SDK's streaming endpoint answers
        if method == "tools/list":
            result = self._listing(version, principal, params, modern, client)
        else:
            result = await self._call(version, principal, params, modern, client)
        if isinstance(result, MCPError):
            error = result.error.model_dump(mode="json", by_alias=True, exclude_none=True)
            if modern:
                payload = (
                    '{"jsonrpc":"2.0","id":'
                    + json.dumps(request_id)
                    + ',"error":'
                    + json.dumps(error, separators=(",", ":"))
                    + "}"
                ).encode()
                status = ERROR_CODE_HTTP_STATUS.get(result.error.code, 200)
            else:
                payload = (
                    b'{"jsonrpc":"2.0","id":'
                    + pydantic_core.to_json(request_id)
                    + b',"error":'
                    + pydantic_core.to_json(result.error.model_dump(by_alias=True, exclude_unset=True))
                    + b"}"
                )
                status = 200
        else:
            status = 200
            if isinstance(result, bytes):
                prefix = b'{"jsonrpc":"2.0","id":' + (
                    json.dumps(request_id).encode() if modern else pydantic_core.to_json(request_id)
                )
                payload = prefix + b',"result":' + result + b"}"
            else:
                payload = (_modern_bytes if modern else _legacy_bytes)(request_id, result)
        length = str(len(payload)).encode()
        if modern:
            response_headers = [(b"content-length", length), (b"content-type", b"application/json")]
        else:
            response_headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        return status, response_headers, payload

    def _listing(self, version: str, principal, params: dict, modern: bool, client: str | None) -> bytes:
        if params.get("cursor") is not None:
            raise Decline  # the SDK words the refusal (and counts it)
        visible = self.gate.visible_tools(principal)  # packs, levels, narrowing, the workspace's switches
        cached = self._lists.get((version, visible))
        if cached is None:
            shaped = self.scope_rules.cached_list(version, visible)
            if shaped is None:
                raise Decline  # the first listing per version and scope goes through the SDK, which keeps it
            cached = _compact_json(shaped) if modern else pydantic_core.to_json(shaped)
            if len(self._lists) >= 256:  # switches and narrowings make more visible sets: start again
                self._lists.clear()
            self._lists[(version, visible)] = cached
        self.gate.count(principal, "tools/list", True, client)
        return cached

    async def _call(self, version: str, principal, params: dict, modern: bool, client: str | None):
        name = params.get("name")
        spec = self.scope_rules.registry.tool(name) if isinstance(name, str) else None
        tool = self.tools.get(name) if isinstance(name, str) and spec is not None else None
        if spec is None or tool is None or name in self._param_headers:
            raise Decline  # unknown tools: the SDK words the error
        # (the write limit and the scope challenge were the gate's, before this path was asked)
        arguments = params.get("arguments")
        found = self.gate.admit_call(principal, spec, arguments)
        if found is not None:
            refusal, outcome = found
            self.gate.count(principal, spec.name, False, client, outcome)
            return _plain(CallToolResult(content=[TextContent(type="text", text=refusal)], is_error=True))
        box: list[str] = []  # the tool wrapper notes a timeout here, for the activity record
        timed_out.set(box)
        try:
            # what MCPServer.call_tool runs for a tool without a Context argument or resolvers
            # the SDK types context as required; it is read only for a Context argument or resolvers
            result = await tool.run(arguments or {}, None, convert_result=True)  # type: ignore[arg-type]  # none here
        except MCPError as exc:
            self.gate.count(principal, spec.name, False, client)
            return exc
        except Exception as exc:  # what MCPServer's tools/call handler makes of a failed call
            if isinstance(exc, SdkToolError) and not isinstance(exc, UnexpectedToolError):
                log.info("Tool %r failed: %r", name, str(exc))
            else:
                log.exception("Tool %r raised an unexpected exception", name)
            result = CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        try:
            dumped = _shaped(result, version)
            if dumped is None:
                dumped = surfaces.serialize_server_result("tools/call", version, _plain(result))
        except ValidationError:
            log.exception("tool %r returned an invalid result", spec.name)
            self.gate.count(principal, spec.name, False, client)
            return MCPError(code=-32603, message="Handler returned an invalid result")
        if modern:
            if dumped.get("resultType") is None:
                dumped["resultType"] = "complete"
            meta = dumped.get("_meta")
            if meta is None:
                dumped["_meta"] = {SERVER_INFO_META_KEY: self.sdk.server_info_stamp()}
            elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
                dumped["_meta"] = {**meta, SERVER_INFO_META_KEY: self.sdk.server_info_stamp()}
        failed = bool(result.is_error)
        self.gate.count(principal, spec.name, not failed, client, "timed_out" if failed and box else None)
        return dumped


def _shaped(result: CallToolResult, version: str) -> dict[str, Any] | None:
    with_type = DIRECT.get(version)
    return None if with_type is None else _text_result(result, with_type)


def _text_result(result: CallToolResult, with_type: bool) -> dict[str, Any] | None:
    """What ``serialize_server_result`` makes of a result of text blocks and structured content
    (what Poggio's tools return), written directly; None for anything else."""
    if result.meta is not None or result.result_type != "complete":
        return None
    content = []
    for block in result.content:
        if type(block) is not TextContent or block.annotations is not None or block.meta is not None:
            return None
        content.append({"text": block.text, "type": "text"})
    shaped: dict[str, Any] = {"content": content, "isError": bool(result.is_error)}
    if with_type:
        shaped["resultType"] = "complete"
    if result.structured_content is not None:
        shaped["structuredContent"] = result.structured_content
    return shaped


def _direct_versions() -> dict[str, bool]:
    """The protocol versions whose tools/call result :func:`_text_result` writes as the SDK's
    serialiser does (checked here, at import, on sample results), each with whether it carries
    ``resultType``; the other versions keep the serialiser."""
    samples = [
        CallToolResult(
            content=[TextContent(type="text", text="x"), TextContent(type="text", text="y")],
            structured_content={"a": [1, {"b": None}], "c": "d"},
        ),
        CallToolResult(content=[TextContent(type="text", text="x")], is_error=True),
    ]
    direct = {}
    for method, version in surfaces.SERVER_RESULTS:
        if method != "tools/call":
            continue
        for with_type in (False, True):
            if all(
                json.dumps(surfaces.serialize_server_result(method, version, _plain(r)))
                == json.dumps(_text_result(r, with_type))
                for r in samples
            ):
                direct[version] = with_type
                break
    return direct


def _plain(result: CallToolResult) -> dict[str, Any]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


DIRECT = _direct_versions()

__all__ = ["LeanPath", "SdkAdapter", "UNKNOWN_TOOL"]
