"""Tool packs' tools as MCP tools, bound per request to the caller's workspace and pack scope.

One :class:`MCPServer` holds every loaded pack's tools. Each tool is wrapped so that it runs with a
database connection, a per-call timeout and the :class:`poggio.ToolContext` of the calling token: on
SQLite on the event loop (an in-process read costs less than the hop to a thread; the statement
deadline stops its SQL at the timeout), on PostgreSQL or when the tool says ``thread=True`` in a
worker thread (the event loop keeps serving other requests meanwhile). The
:class:`ScopeMiddleware` hides tools outside a token's packs from ``tools/list``, refuses calls to
them, and counts every request for the token's usage.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import inspect
import logging
import time
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_INFO_META_KEY,
    INVALID_PARAMS,
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    Icon,
    ImageContent,
    ListToolsResult,
    Result,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from peewee import SqliteDatabase

from mcp_server.admission import admitted, client_name
from mcp_server.auth import Principal, current_principal
from mcp_server.gate import Gate
from mcp_server.metrics import Metrics
from mcp_server.prompting import STREAMED, Prompts, Reporter
from mcp_server.resources import ResourceHandlers
from mcp_server.sdk import lowlevel_server
from poggio import __version__
from poggio.errors import TOOL_MESSAGES, database_trouble
from poggio.records.activity import METHOD_LABELS
from poggio.records.usage import UsageRecorder
from poggio.runtime.packs import CursorCodec, ToolSpec
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.results import Audio, Image, ToolError, ToolResult
from poggio.settings import Settings
from poggio.storage.db import LockWait, database, lock_wait, statement_deadline

log = logging.getLogger(__name__)

# how long a tool call's SQL may run on after the call's timeout answered the caller
STATEMENT_GRACE = 1.0

# Methods whose usage is counted under their own name; every other method name a caller sends is
# counted as "other", so junk method names cannot add rows to the usage table.
COUNTED_METHODS = frozenset(METHOD_LABELS[:4])
OTHER = "other"
NO_SUCH_THING: dict[str, tuple[int, str]] = {}  # method -> MCPError(code, message)
UNKNOWN_TOOL = METHOD_LABELS[5]

# Set by ScopeMiddleware for each request: a tool call that times out says so here, so the request is
# recorded as timed_out rather than as any tool error (the SDK turns both into the same result).
_timed_out: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("poggio_timed_out", default=None)
# Set by mcp_server.tracing for a traced request: the tool's database work gets a span of its own.
tool_tracer: contextvars.ContextVar[Any] = contextvars.ContextVar("poggio_tool_tracer", default=None)


def label_of(registry: PackRegistry):
    """(method, tool name) -> the name a request is counted and recorded under."""
    tools = frozenset(t.name for t in registry.tools())

    def label(method: str | None, name: str | None) -> str:
        if method == "tools/call":
            return name if name in tools else UNKNOWN_TOOL
        return method if method in COUNTED_METHODS else OTHER

    return label


def with_meta(result, meta: dict | None):
    """``result`` with ``meta`` added to its ``_meta`` (a model or an already-shaped dict)."""
    if not meta:
        return result
    if isinstance(result, Result):
        return result.model_copy(update={"meta": {**(result.meta or {}), **meta}})
    if isinstance(result, dict):
        return {**result, "_meta": {**(result.get("_meta") or {}), **meta}}
    return result


class ToolTimeout(MCPToolError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _content(result: ToolResult) -> list[ContentBlock]:
    """A tool result's text, then its attachments, as MCP content blocks."""
    blocks: list[ContentBlock] = [TextContent(type="text", text=result.text)]
    for item in result.attachments:
        if isinstance(item, Image):
            blocks.append(ImageContent(type="image", data=_b64(item.data), mime_type=item.mime_type))
        elif isinstance(item, Audio):
            blocks.append(AudioContent(type="audio", data=_b64(item.data), mime_type=item.mime_type))
        elif item.text is not None:
            blocks.append(
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(uri=item.uri, mime_type=item.mime_type, text=item.text),
                )
            )
        else:
            blocks.append(
                EmbeddedResource(
                    type="resource",
                    resource=BlobResourceContents(uri=item.uri, mime_type=item.mime_type, blob=_b64(item.blob or b"")),
                )
            )
    return blocks


def _bind(
    spec: ToolSpec,
    registry: PackRegistry,
    cursors: CursorCodec,
    limiter: anyio.CapacityLimiter,
    timeout: float,
    metrics: Metrics,
    changed=None,
):
    """An async MCP tool function for ``spec`` with the signature of its arguments (no context)."""
    params = spec.parameters()  # without the ToolContext; a write tool's idempotency_key
    returns = Annotated[CallToolResult, spec.output_model] if spec.output_model else CallToolResult
    # SQLite is an in-process library: a call costs less on the event loop than the hop to a worker
    # thread, and the statement deadline stops runaway SQL. PostgreSQL is a network round trip, and
    # a tool that may block otherwise says so (ToolSpec.thread): those run in a worker thread.
    is_sqlite = isinstance(database.obj, SqliteDatabase)
    inline = is_sqlite and not spec.thread
    seconds = metrics.tool_seconds.labels(spec.name)

    async def call(**arguments: Any) -> CallToolResult:
        sdk_context = arguments.pop(REPORTS, None)  # tools that report: the SDK's Context of the call
        ctx = admitted.get()
        if ctx is None or ctx.tool_name != spec.name:  # unreachable: the gate admits every call it lets run
            raise MCPToolError(f"{spec.name} was not admitted for this request")
        admitted.set(None)  # one admission, one run
        if changed is not None:  # the resources this call changes, for their subscribers
            ctx = dataclasses.replace(ctx, changes=[])
        streamed = sdk_context is not None and _streamed(sdk_context)
        if streamed:  # notices go out from the event loop while the tool runs in a worker thread
            ctx = dataclasses.replace(ctx, reporter=Reporter(sdk_context, spec))

        def run(deadline: float) -> ToolResult:
            with database.connection_context(), statement_deadline(deadline):
                result = spec.run(ctx, arguments)
            if not isinstance(result, ToolResult):
                raise TypeError(f"returned {type(result).__name__}, not a ToolResult")
            return result

        if (tracer := tool_tracer.get()) is not None:
            run = tracer.traced(run, spec.name, "sqlite" if inline or spec.thread and is_sqlite else "postgresql")

        def timed_out() -> ToolTimeout:
            log.warning("tool %s timed out after %ss", spec.name, timeout)
            if (box := _timed_out.get()) is not None:
                box.append(spec.name)
            return ToolTimeout(
                f"{spec.name} took longer than {timeout:g} s and was stopped; "
                "narrow the request (filters, a smaller limit) and try again"
            )

        with seconds.time():
            started = time.monotonic()
            wait = LockWait()
            lock_wait.set(wait)  # a write waiting for the write lock at the timeout was held up by others
            try:
                if inline and not streamed:
                    # on the event loop: its SQL is stopped at the timeout itself ("interrupted")
                    result = run(timeout)
                    if time.monotonic() - started > timeout:
                        raise timed_out()
                else:
                    # past the timeout the caller has its answer and this thread is abandoned: its SQL
                    # is stopped soon after, so it does not hold a connection and a core for minutes
                    with anyio.fail_after(timeout):
                        result = await anyio.to_thread.run_sync(
                            run, timeout + STATEMENT_GRACE, abandon_on_cancel=True, limiter=limiter
                        )
            except TimeoutError:
                if wait.waiting:
                    log.warning("tool %s waited for the write lock past its timeout", spec.name)
                    raise MCPToolError(TOOL_MESSAGES["busy"]) from None
                raise timed_out() from None
            except ToolTimeout:
                raise
            except ToolError as exc:
                raise MCPToolError(str(exc)) from None
            except Exception as exc:
                trouble = database_trouble(exc)  # busy with other writes, out of disk: in words
                if trouble is not None:
                    log.warning("tool %s: the database refused: %s", spec.name, exc)
                    raise MCPToolError(TOOL_MESSAGES[trouble]) from None
                if inline and time.monotonic() - started >= timeout:
                    raise timed_out() from None
                log.exception("tool %s (pack %s) raised", spec.name, spec.pack)
                raise MCPToolError(f"{spec.name} failed because of an internal error; it has been logged") from None
        if ctx.changes:
            changed(ctx.workspace_id, ctx.changes)
        return CallToolResult(
            content=_content(result),
            structured_content=None if result.data is None else result.data.model_dump(mode="json", by_alias=True),
        )

    call.__name__ = spec.name
    call.__doc__ = spec.description
    if spec.progress or spec.logs:  # the SDK passes its Context to a parameter annotated so
        params = [*params, inspect.Parameter(REPORTS, inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
        call.__annotations__ = {REPORTS: Context}
    call.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    return call


REPORTS = "poggio_reports"  # the parameter that receives the SDK's Context (never in the input schema)


def _streamed(sdk_context) -> bool:
    """Whether this call's answer is an event stream that can carry notices (else they go nowhere)."""
    try:
        request = sdk_context.request_context
    except ValueError:  # no request context: the lean path runs the tool without one
        return False
    http = getattr(request, "request", None)
    return bool(getattr(http, "scope", {}).get(STREAMED))


class ScopeMiddleware:
    """SDK middleware: the SDK path's side of the gate (:class:`mcp_server.gate.Gate`): tool
    visibility, call admission and usage counting for every request the SDK answers."""

    def __init__(self, registry: PackRegistry, recorder: UsageRecorder, metrics: Metrics, gate=None):
        if gate is None:  # a server built without an app around it (tests, benchmarks)
            gate = Gate(registry, metrics, None)
        self.gate = gate
        self.registry = registry
        self.recorder = recorder
        self.metrics = metrics
        # tools/list answers, already filtered and shaped for the wire, per (protocol version, the
        # set of tools the caller may see: Gate.visible_tools): the tools are fixed for the life of
        # the process, and building and validating the list was most of the cost of answering it.
        self._tool_lists: dict[tuple[str, frozenset[str]], dict[str, Any]] = {}

    @staticmethod
    def _client(ctx) -> str | None:
        info = None
        if ctx.method == "initialize" and isinstance(ctx.params, dict):
            info = ctx.params.get("clientInfo")
        elif isinstance(ctx.params, dict) and isinstance(ctx.params.get("_meta"), dict):
            info = ctx.params["_meta"].get(CLIENT_INFO_META_KEY)  # 2026-07-28: sent with every request
        elif ctx.session is not None and ctx.session.client_params is not None:
            ci = ctx.session.client_params.client_info
            info = {"name": ci.name, "version": ci.version}
        return client_name(info)

    def cached_list(self, protocol_version: str, visible: frozenset[str]) -> dict[str, Any] | None:
        """The ``tools/list`` result already shaped for this protocol version and set of visible
        tools, if any."""
        return self._tool_lists.get((protocol_version, visible))

    async def __call__(self, ctx, call_next):
        principal = current_principal()
        if ctx.request_id is None or principal is None:
            return await call_next(ctx)
        box: list[str] = []  # the tools that timed out in this request
        _timed_out.set(box)
        return with_meta(await self._handle(ctx, call_next, principal, box), principal.expiry_meta())

    async def _handle(self, ctx, call_next, principal: Principal, box: list):
        label = ctx.method if ctx.method in COUNTED_METHODS else OTHER
        if ctx.method in NO_SUCH_THING:
            # tools only, as the capabilities say; the list methods still answer their empty lists for
            # clients that ask without looking, but MCPServer's "Unknown prompt" carried error code 0
            self._count(principal, ctx, label, ok=False)
            raise MCPError(*NO_SUCH_THING[ctx.method])
        if ctx.method == "tools/list" and isinstance(ctx.params, dict) and ctx.params.get("cursor") is not None:
            self._count(principal, ctx, label, ok=False)
            raise MCPError(
                INVALID_PARAMS,
                "Invalid cursor: tools/list answers on one page and issues no cursor; call it without one",
            )
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            spec = self.registry.tool(name) if isinstance(name, str) else None
            label = spec.name if spec else UNKNOWN_TOOL
            found = None if spec is None else self.gate.admit_call(principal, spec, ctx.params.get("arguments"))
            if found is not None:
                refusal, outcome = found
                self._count(principal, ctx, label, ok=False, outcome=outcome)
                return CallToolResult(content=[TextContent(type="text", text=refusal)], is_error=True)
        listing = ctx.method == "tools/list"
        visible: frozenset[str] = self.gate.visible_tools(principal) if listing else frozenset()  # read when listing
        cache_key = (ctx.protocol_version, visible)
        if listing and (cached := self._tool_lists.get(cache_key)) is not None:
            self._count(principal, ctx, label, ok=True)
            return cached
        try:
            result = await call_next(ctx)
        except BaseException:
            self._count(principal, ctx, label, ok=False)
            raise
        if listing:
            result = self._shape_list(result, visible)
            if isinstance(result, dict):
                if len(self._tool_lists) >= 256:  # switches and narrowings make more visible sets: start again
                    self._tool_lists.clear()
                self._tool_lists[cache_key] = result
        if ctx.method in ("initialize", "server/discover"):
            result = _tools_only(
                result, prompts=bool(self.registry.prompts()), resources=bool(self.registry.resources())
            )
        failed = (isinstance(result, CallToolResult) and result.is_error) or (
            isinstance(result, dict) and bool(result.get("isError") or result.get("is_error"))
        )
        self._count(principal, ctx, label, ok=not failed, outcome="timed_out" if failed and box else None)
        return result

    def _shape_list(self, result, allowed: frozenset[str]):
        """The tools the caller may call only (``allowed``: :meth:`Gate.visible_tools`), each input
        schema closed (``additionalProperties: false``): the arguments it does not name are refused."""

        def shape(tool: dict[str, Any]) -> dict[str, Any]:
            key = "inputSchema" if "inputSchema" in tool else "input_schema"
            return {**tool, key: {**tool.get(key, {}), "additionalProperties": False}}

        if isinstance(result, ListToolsResult):
            result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return {**result, "tools": [shape(t) for t in result["tools"] if t.get("name") in allowed]}
        return result

    def _count(self, principal: Principal, ctx, label: str, ok: bool, outcome: str | None = None) -> None:
        self.count(principal, label, ok, self._client(ctx), outcome)

    def count(self, principal: Principal, label: str, ok: bool, client: str | None, outcome: str | None = None) -> None:
        self.gate.count(principal, label, ok, client, outcome)


def _tools_only(result, prompts: bool = False, resources: bool = False):
    """An ``initialize`` or ``server/discover`` answer that advertises what is served: tools, whose
    list never changes while the process runs. MCPServer always registers prompt and resource
    handlers, so the SDK would advertise both (and, on 2026-07-28, change notifications)."""
    if not isinstance(result, dict) or not isinstance(result.get("capabilities"), dict):
        return result
    hidden = ("resources",) if prompts else ("prompts", "resources")
    capabilities = {k: v for k, v in result["capabilities"].items() if k not in hidden}
    for kind in ("tools", "prompts"):  # fixed for the life of the process
        if isinstance(capabilities.get(kind), dict):
            capabilities[kind] = {**capabilities[kind], "listChanged": False}
    if resources:  # served by mcp_server.resources; updates cannot be delivered (stateless)
        capabilities["resources"] = {"subscribe": False, "listChanged": False}
    return {**result, "capabilities": capabilities}


def build_server(
    settings: Settings,
    registry: PackRegistry,
    recorder: UsageRecorder,
    metrics: Metrics,
    limiter: anyio.CapacityLimiter,
    tools: dict[str, Tool] | None = None,
    gate=None,
) -> MCPServer:
    """The MCP server with every pack's tools. ``tools``, when given, receives each tool as the SDK's
    ``Tool`` (built by ``Tool.from_function`` with what ``add_tool`` gets), for the lean path to run.
    ``gate``: the app's :class:`mcp_server.gate.Gate` (else one of its own, for a server alone)."""
    cursors = CursorCodec(settings.secret_key.encode())
    if gate is None:
        gate = Gate(registry, metrics, cursors)
    server = MCPServer(
        name=settings.product_name,
        title=settings.product_name,
        version=__version__,
        instructions=registry.instructions(settings.product_name),
        middleware=[ScopeMiddleware(registry, recorder, metrics, gate)],
        log_level="WARNING",
        subscriptions=False,  # no subscriptions/listen: nothing here ever changes or notifies
    )
    resources = ResourceHandlers(registry, cursors, limiter, settings.tool_timeout_seconds)
    if registry.resources():
        resources.install(lowlevel_server(server))
    Prompts(registry, cursors, limiter).install(lowlevel_server(server))  # prompts, completion, setLevel
    for spec in registry.tools():
        fn = _bind(spec, registry, cursors, limiter, settings.tool_timeout_seconds, metrics, resources.changed)
        options: dict[str, Any] = dict(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=ToolAnnotations(
                title=spec.title,
                read_only_hint=spec.read_only,
                destructive_hint=False if spec.read_only else spec.destructive,
                idempotent_hint=spec.idempotent,
                open_world_hint=spec.open_world,
            ),
            meta={"io.poggio/pack": spec.pack, **({"ui": {"resourceUri": spec.app}} if spec.app else {})},
            icons=[
                Icon(src=i.src, mime_type=i.mime_type, sizes=list(i.sizes) or None, theme=i.theme) for i in spec.icons
            ]
            or None,
        )
        server.add_tool(fn, **options)
        if tools is not None:
            tools[spec.name] = Tool.from_function(fn, **options)
    return server
