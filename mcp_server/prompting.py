"""Packs' prompts, argument completion, and the progress and log notices of tool calls.

``prompts/list``, ``prompts/get``, ``completion/complete`` and ``logging/setLevel`` are served by
handlers of our own on the SDK's low-level server (MCPServer's prompt manager has no notion of a
caller's pack scope and words errors with code 0). A prompt, or a completion, of a pack outside the
caller's pack scope does not exist for that caller: the one rule is :func:`may_use_pack`.

Progress and log notices ride the call's own response, which is then an event stream
(:func:`wants_stream` decides, for the lean path and for :class:`StreamRouter`): no session, no
state between requests, so any replica still serves any request.

``logging/setLevel`` (2025-11-25): accepted, but nothing is remembered, because the next request
may reach another replica and there is no session to keep it in. A legacy-generation client gets
the notices of a call at ``info`` and above, or at the level it names in that request's ``_meta``
under ``io.modelcontextprotocol/logLevel`` — the per-request opt-in that the 2026-07-28 revision
keeps instead of ``logging/setLevel`` (there, without it, no notice is sent at all).
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LOG_LEVEL_META_KEY,
    BlobResourceContents,
    CompleteRequestParams,
    CompleteResult,
    EmbeddedResource,
    EmptyResult,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    PaginatedRequestParams,
    SetLevelRequestParams,
    TextResourceContents,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcp_server.asgi import first_headers, read_body, replay
from mcp_server.auth import current_principal
from poggio.identity import scopes
from poggio.runtime.packs import CursorCodec, ToolSpec
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.prompts import Message, PromptArgumentError, PromptSpec, completions
from poggio.runtime.resources import ResourceSpec
from poggio.runtime.results import Audio, Image, Resource, ToolError
from poggio.storage.db import database

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
STREAMED = "poggio.streamed"  # ASGI scope key: this POST is answered as an event stream (StreamRouter)
DEFAULT_LEVEL = "info"  # a legacy client's notices when its request names no level (setLevel is not kept)


def may_use_pack(principal, pack: str) -> bool:
    """Whether ``principal`` (an authenticated caller) may see and use what ``pack`` offers besides
    its tools: its prompts and completions (read access to the pack)."""
    return principal is not None and scopes.may_see(pack, True, principal.token.scope)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _content(item: str | Image | Audio | Resource) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, Image):
        return {"type": "image", "data": _b64(item.data), "mimeType": item.mime_type}
    if isinstance(item, Audio):
        return {"type": "audio", "data": _b64(item.data), "mimeType": item.mime_type}
    resource: TextResourceContents | BlobResourceContents
    if item.text is not None:
        resource = TextResourceContents(uri=item.uri, mime_type=item.mime_type, text=item.text)
    else:
        resource = BlobResourceContents(uri=item.uri, mime_type=item.mime_type, blob=_b64(item.blob or b""))
    embedded = EmbeddedResource(type="resource", resource=resource)
    return embedded.model_dump(by_alias=True, mode="json", exclude_none=True)


def _message(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": _content(message.content)}


def _unknown(name: Any) -> MCPError:
    return MCPError(
        INVALID_PARAMS, f"Unknown prompt: {str(name)[:100]!r}; prompts/list names the prompts this token may use"
    )


class Prompts:
    """The request handlers; ``count(principal, label, ok, client)`` records each request's usage."""

    def __init__(self, registry: PackRegistry, cursors: CursorCodec, limiter: anyio.CapacityLimiter):
        self.registry = registry
        self.cursors = cursors
        self.limiter = limiter

    def install(self, lowlevel) -> None:
        lowlevel.add_request_handler("prompts/list", PaginatedRequestParams, self.list_prompts)
        lowlevel.add_request_handler("prompts/get", GetPromptRequestParams, self.get_prompt)
        lowlevel.add_request_handler("completion/complete", CompleteRequestParams, self.complete)
        lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, self.set_level)

    def _context(self, principal, name: str):
        token = principal.token
        return self.registry.tool_context(
            self.cursors,
            token.workspace_id,
            token.token_id,
            token.packs,
            name,
            writable=frozenset(),
            caller=token.name,
            token_kind=token.kind,
        )

    async def _in_thread(self, fn, *args):
        def run():
            with database.connection_context():
                return fn(*args)

        return await anyio.to_thread.run_sync(run, limiter=self.limiter)

    async def list_prompts(self, ctx, params) -> ListPromptsResult:
        if params is not None and getattr(params, "cursor", None) is not None:
            raise MCPError(INVALID_PARAMS, "Invalid cursor: prompts/list answers on one page and issues no cursor")
        principal = current_principal()
        listed = []
        for spec in self.registry.prompts():
            if not may_use_pack(principal, spec.pack):
                continue
            entry: dict[str, Any] = {"name": spec.name, "title": spec.title, "description": spec.description}
            entry["arguments"] = [{k: v for k, v in a.items() if v is not None} for a in spec.arguments()]
            listed.append(entry)
        return ListPromptsResult.model_validate({"prompts": listed})  # private, stale at once (the defaults)

    async def get_prompt(self, ctx, params: GetPromptRequestParams) -> GetPromptResult:
        principal = current_principal()
        spec = self.registry.prompt(params.name)
        if spec is None or not may_use_pack(principal, spec.pack):
            raise _unknown(params.name)  # out of scope: the same answer as no such prompt
        context = self._context(principal, spec.name)
        try:
            messages = await self._in_thread(spec.render, context, params.arguments)
        except PromptArgumentError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        except ToolError as exc:  # the prompt refused an argument's value (an unknown domain, ...)
            raise MCPError(INVALID_PARAMS, f"Invalid arguments for prompt {spec.name}: {exc}") from None
        except Exception:
            log.exception("prompt %s (pack %s) raised", spec.name, spec.pack)
            failed = f"prompt {spec.name} failed because of an internal error; it has been logged"
            raise MCPError(INTERNAL_ERROR, failed) from None
        return GetPromptResult.model_validate(
            {"description": spec.description, "messages": [_message(m) for m in messages]}
        )

    def completer(self, principal, ref) -> Any:
        """The completer for ``ref``'s argument table (``{argument: completer}``) and its pack, if
        the caller may use that pack; ``None`` otherwise (an unknown reference or one out of scope)."""
        spec: PromptSpec | ResourceSpec | None
        if getattr(ref, "type", None) == "ref/prompt":
            spec = self.registry.prompt(ref.name)
        else:  # a resource template (its variables complete like a prompt's arguments)
            spec = self.registry.resource_template(ref.uri)
        if spec is None or not may_use_pack(principal, spec.pack):
            return None
        return getattr(spec, "complete", None) or {}

    async def complete(self, ctx, params: CompleteRequestParams) -> CompleteResult:
        principal = current_principal()
        table = self.completer(principal, params.ref)
        if table is None:
            ref = params.ref
            what = f"prompt {ref.name!r}" if ref.type == "ref/prompt" else f"resource template {ref.uri!r}"
            raise MCPError(INVALID_PARAMS, f"Unknown {what}: nothing to complete")
        completer = table.get(params.argument.name)
        if completer is None:
            return CompleteResult.model_validate({"completion": {"values": [], "total": 0, "hasMore": False}})
        context = self._context(principal, getattr(params.ref, "name", None) or "completion")
        given = params.context.arguments if params.context is not None else None
        try:
            answer = await self._in_thread(completions, completer, context, params.argument.value, given)
        except Exception:
            log.exception("completer for %s raised", params.argument.name)
            raise MCPError(INTERNAL_ERROR, f"completing {params.argument.name!r} failed; it has been logged") from None
        return CompleteResult.model_validate({"completion": answer})

    async def set_level(self, ctx, params: SetLevelRequestParams) -> EmptyResult:
        # accepted, not kept: see the module's docstring (no session; any replica serves the next request)
        return EmptyResult()


# -- progress and log notices of a tool call ---------------------------------------------------------------


def log_level(params: dict | None, modern: bool) -> str | None:
    """The lowest level of log notice the caller asked for in this request, or None for none."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    asked = meta.get(LOG_LEVEL_META_KEY) if isinstance(meta, dict) else None
    if asked in LEVELS:
        return asked
    return None if modern else DEFAULT_LEVEL


def wants_stream(spec: ToolSpec | None, params: Any, modern: bool, accepts_sse: bool) -> bool:
    """Whether a ``tools/call`` of ``spec`` with ``params`` is answered as an event stream: the tool
    reports and the caller asked for what it reports (a progress token; log notices: on 2025-era
    protocols always, on 2026-07-28 by the request's log level), and it accepts a stream."""
    if spec is None or not accepts_sse or not (spec.progress or spec.logs):
        return False
    meta = params.get("_meta") if isinstance(params, dict) else None
    if spec.progress and isinstance(meta, dict) and meta.get("progressToken") is not None:
        return True
    return spec.logs and log_level(params, modern) is not None


class Reporter:
    """``ctx.progress`` and ``ctx.log`` of a tool running in a worker thread: each notice sent on
    the call's own stream, from the event loop, before the tool goes on."""

    def __init__(self, sdk_context, spec: ToolSpec):
        self.sdk = sdk_context
        self.spec = spec
        request = sdk_context.request_context
        version = request.protocol_version
        modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
        self.level = log_level(dict(request.params or {}), modern)
        self.last = float("-inf")

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if not self.spec.progress:
            return
        done = max(float(done), self.last)  # progress never goes back
        self.last = done
        anyio.from_thread.run(functools.partial(self.sdk.report_progress, done, total, message))

    def log(self, level: str, message: str, data: Any = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if not self.spec.logs or self.level is None or LEVELS.index(level) < LEVELS.index(self.level):
            return
        payload = message if data is None else {"message": message, "data": data}

        async def send() -> None:
            with warnings.catch_warnings():  # logging is deprecated by 2026-07-28, which keeps it per request
                warnings.simplefilter("ignore")
                await self.sdk.log(level, payload, logger_name=self.spec.name)

        anyio.from_thread.run(send)


def accepts_sse(headers: dict[bytes, bytes]) -> bool:
    accepted = [t.split(";")[0].strip().lower() for t in headers.get(b"accept", b"").decode("latin-1").split(",")]
    return "text/event-stream" in accepted


def is_modern(headers: dict[bytes, bytes]) -> bool:
    version = headers.get(b"mcp-protocol-version")
    return version is not None and version.decode("latin-1") not in HANDSHAKE_PROTOCOL_VERSIONS


class StreamRouter:
    """ASGI app in front of the SDK's two stateless endpoints: a ``tools/call`` that
    :func:`wants_stream` goes to the one that answers with an event stream (marked ``STREAMED`` in
    its scope), everything else to the one that answers with one JSON body, as before. Only a POST
    that may be such a call (its body names ``tools/call``, and some tool reports) is read here."""

    def __init__(self, json_app, stream_app, registry: PackRegistry, max_body: int):
        self.json_app = json_app
        self.stream_app = stream_app
        self.registry = registry
        self.max_body = max_body
        self.reporting = any(t.progress or t.logs for t in registry.tools())

    async def __call__(self, scope, receive, send):
        if not self.reporting or scope["type"] != "http" or scope["method"] != "POST":
            return await self.json_app(scope, receive, send)
        headers = first_headers(scope)
        if not accepts_sse(headers):
            return await self.json_app(scope, receive, send)
        read = await read_body(receive, self.max_body)
        if read is None:
            return
        body, trailing, whole = read
        replayed = replay(body, trailing, whole, receive)
        if whole and b"tools/call" in body and self._streams(body, is_modern(headers)):
            return await self.stream_app({**scope, STREAMED: True}, replayed, send)
        return await self.json_app(scope, replayed, send)

    def _streams(self, body: bytes, modern: bool) -> bool:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return False  # the JSON endpoint words the parse error
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return False
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        spec = self.registry.tool(name) if isinstance(name, str) else None
        return wants_stream(spec, params, modern, True)
