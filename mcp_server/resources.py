"""Tool packs' resources as MCP resources: ``resources/list`` (paged), ``resources/templates/list``,
``resources/read``, and ``resources/subscribe`` / ``unsubscribe``, each for the caller's workspace
and pack scope.

Registered on the SDK's low-level server in place of MCPServer's own handlers (whose resources are
fixed at start-up and know no caller). A resource of a pack outside the caller's scope does not
exist for that caller: it is absent from the lists, and reading or subscribing to it answers the
protocol's resource-not-found error, worded the same as for a URI nothing serves, so an answer
never tells whether a record exists elsewhere.

Subscriptions: this server is stateless and answers each POST with one JSON body (any replica serves
any request; ``mcp_server.app``). There is no session and no stream on which a
``notifications/resources/updated`` could reach a client, so ``resources/subscribe`` is accepted
(after checking the URI as a read would) and remembered nowhere, and the capability says
``subscribe: false``. What a write tool says it changed (``ctx.changed``) reaches
:meth:`ResourceHandlers.changed`, the one place a deployment with sessions would deliver it.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import anyio
import anyio.to_thread
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    BlobResourceContents,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types import Resource as MCPResource
from mcp_types import ResourceTemplate as MCPResourceTemplate
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from peewee import SqliteDatabase

from mcp_server.auth import current_principal
from poggio.errors import database_trouble
from poggio.identity import scopes
from poggio.runtime.packs import CursorCodec, ToolContext
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.resources import ResourceNotFound, ResourceSpec
from poggio.runtime.results import ToolError
from poggio.storage.db import database, statement_deadline

log = logging.getLogger(__name__)

# 2025-06-18 and 2025-11-25: "Resource not found"; retired in 2026-07-28, which answers invalid params
RESOURCE_NOT_FOUND = -32002
PAGE = 100  # resources/list entries per page (a template's lister pages its own records)
LIST_CURSOR = "resources/list"


def may_read(principal, pack: str) -> bool:
    """Whether ``principal`` (a token or grant) may read resources of ``pack``: the read scope
    of its tools (``scopes.may_see`` for a read-only tool)."""
    return scopes.may_see(pack, True, principal.token.scope)


def not_found(uri: str, protocol_version: str | None) -> MCPError:
    code = INVALID_PARAMS if protocol_version in MODERN_PROTOCOL_VERSIONS else RESOURCE_NOT_FOUND
    return MCPError(code, f"Resource not found: {uri}", data={"uri": uri})


class ResourceHandlers:
    def __init__(self, registry: PackRegistry, cursors: CursorCodec, limiter: anyio.CapacityLimiter, timeout: float):
        self.registry = registry
        self.cursors = cursors
        self.limiter = limiter
        self.timeout = timeout
        # an MCP App view is there for the tools that show it: the tools of each ui:// URI
        self._app_tools: dict[str, list] = {}
        for tool in registry.tools():
            if tool.app:
                self._app_tools.setdefault(tool.app, []).append(tool)

    def _app_hidden(self, principal, spec: ResourceSpec) -> bool:
        """Whether ``spec`` is the app view of tools none of which the caller may see (switched off in
        its workspace, narrowed away, or out of its scope): then it is not found, as they are unknown."""
        tools = self._app_tools.get(spec.uri)
        scope = principal.token.scope
        return tools is not None and not any(scopes.may_see(t.pack, t.read_only, scope, t.name) for t in tools)

    def install(self, lowlevel) -> None:
        """Serve the resource methods on the SDK's low-level server."""
        lowlevel.add_request_handler("resources/list", PaginatedRequestParams, self.list_resources)
        lowlevel.add_request_handler("resources/templates/list", PaginatedRequestParams, self.list_templates)
        lowlevel.add_request_handler("resources/read", ReadResourceRequestParams, self.read)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self.subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self.unsubscribe)

    # -- the caller --------------------------------------------------------------------------------
    @staticmethod
    def _principal():
        principal = current_principal()
        if principal is None:  # unreachable behind the auth middleware; refuse rather than guess
            raise MCPError(INVALID_PARAMS, "not authenticated")
        return principal

    def _context(self, principal, name: str) -> ToolContext:
        token = principal.token
        return self.registry.tool_context(
            self.cursors,
            token.workspace_id,
            token.token_id,
            token.packs,
            name,
            writable=token.writable,
            caller=token.name,
            token_kind=token.kind,
        )

    def _visible(self, principal) -> list[ResourceSpec]:
        return [
            r for r in self.registry.resources() if may_read(principal, r.pack) and not self._app_hidden(principal, r)
        ]

    async def _run(self, spec: ResourceSpec, fn, *args: Any) -> Any:
        """``fn(*args)`` with a database connection and the tool timeout; on SQLite inline (as a
        read tool runs), else in a worker thread."""

        def run(deadline: float) -> Any:
            with database.connection_context(), statement_deadline(deadline):
                return fn(*args)

        started = time.monotonic()
        try:
            if isinstance(database.obj, SqliteDatabase) and not spec.thread:
                result = run(self.timeout)
                if time.monotonic() - started > self.timeout:
                    raise TimeoutError
                return result
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(
                    run, self.timeout + 1.0, abandon_on_cancel=True, limiter=self.limiter
                )
        except (ResourceNotFound, MCPError):
            raise
        except ToolError as exc:  # a bad value (a cursor of another list): the caller's error
            raise MCPError(INVALID_PARAMS, f"Cannot read {spec.uri}: {exc}") from None
        except TimeoutError:
            raise MCPError(INVALID_PARAMS, f"Reading {spec.uri} took longer than {self.timeout:g} s") from None
        except Exception as exc:
            if database_trouble(exc) is not None:
                raise MCPError(INVALID_PARAMS, "The database is busy; try again in a moment") from None
            log.exception("resource %s (pack %s) raised", spec.uri, spec.pack)
            raise MCPError(
                -32603, f"Reading {spec.uri} failed because of an internal error; it has been logged"
            ) from None

    # -- lists -------------------------------------------------------------------------------------
    async def list_resources(self, ctx, params: PaginatedRequestParams) -> ListResourcesResult:
        """The static resources in scope, then each listing template's records, a page at a time:
        the cursor holds (source, the source's own cursor), bound to the workspace and scope."""
        principal = self._principal()
        visible = self._visible(principal)
        sources: list[ResourceSpec | None] = [None] + [r for r in visible if r.template and r.lister]
        scope_key = {"packs": sorted(principal.token.scope.packs or ["*"])}
        codec_ctx = self._context(principal, LIST_CURSOR)
        source, inner = 0, None
        if params.cursor is not None:
            try:
                decoded = codec_ctx.decode_cursor(params.cursor, scope_key)
                if decoded is None:  # an empty cursor: refused as before, not taken for the first page
                    raise ValueError("empty cursor")
                source, inner = decoded
            except Exception:
                raise MCPError(
                    INVALID_PARAMS, "Invalid cursor: pass the nextCursor of the previous resources/list"
                ) from None
            if not isinstance(source, int) or not 0 <= source < len(sources):
                raise MCPError(INVALID_PARAMS, "Invalid cursor: pass the nextCursor of the previous resources/list")
        entries: list[MCPResource] = []
        next_cursor = None
        while source < len(sources) and not entries:
            spec = sources[source]
            if spec is None:
                entries = [
                    MCPResource(
                        uri=r.uri,
                        name=r.name,
                        title=r.title,
                        description=r.description or None,
                        mime_type=r.mime_type,
                        _meta=r.meta,
                    )
                    for r in visible
                    if not r.template
                ]
                inner = None
            else:
                lister_ctx = self._context(principal, f"resources/list {spec.uri}")
                found, inner = await self._run(spec, spec.lister, lister_ctx, inner, PAGE)
                entries = [
                    MCPResource(
                        uri=e.uri,
                        name=e.name,
                        title=e.title,
                        description=e.description,
                        mime_type=e.mime_type or spec.mime_type,
                    )
                    for e in found
                ]
            if inner is None:
                source += 1
            if entries and source < len(sources):
                next_cursor = codec_ctx.encode_cursor(scope_key, [source, inner])
        return ListResourcesResult(resources=entries, next_cursor=next_cursor)

    async def list_templates(self, ctx, params: PaginatedRequestParams) -> ListResourceTemplatesResult:
        principal = self._principal()
        if params.cursor is not None:
            raise MCPError(INVALID_PARAMS, "Invalid cursor: resources/templates/list answers on one page")
        return ListResourceTemplatesResult(
            resource_templates=[
                MCPResourceTemplate(
                    uri_template=r.uri,
                    name=r.name,
                    title=r.title,
                    description=r.description or None,
                    mime_type=r.mime_type,
                    _meta=r.meta,
                )
                for r in self._visible(principal)
                if r.template
            ]
        )

    # -- reading -----------------------------------------------------------------------------------
    def _resolve(self, principal, uri: str, protocol_version: str | None) -> tuple[ResourceSpec, dict[str, str]]:
        found = self.registry.resolve(uri) if isinstance(uri, str) and len(uri) <= 2000 else None
        if found is None or not may_read(principal, found[0].pack) or self._app_hidden(principal, found[0]):
            raise not_found(str(uri)[:200], protocol_version)
        return found

    async def read(self, ctx, params: ReadResourceRequestParams) -> ReadResourceResult:
        principal = self._principal()
        uri = str(params.uri)
        spec, values = self._resolve(principal, uri, ctx.protocol_version)
        read_ctx = self._context(principal, f"resources/read {spec.uri}")
        try:
            contents = await self._run(spec, spec.read, read_ctx, uri, values)
        except ResourceNotFound as exc:
            raise MCPError(
                INVALID_PARAMS if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else RESOURCE_NOT_FOUND,
                f"Resource not found: {uri}" + (f" ({exc})" if str(exc) else ""),
                data={"uri": uri},
            ) from None
        return ReadResourceResult(
            contents=[
                TextResourceContents(uri=uri, mime_type=c.mime_type, text=c.text, _meta=c.meta)
                if c.text is not None
                else BlobResourceContents(
                    uri=uri, mime_type=c.mime_type, blob=base64.b64encode(c.blob or b"").decode("ascii"), _meta=c.meta
                )
                for c in contents
            ]
        )

    # -- subscriptions (accepted; nothing can be delivered on a stateless server) -----------------------
    async def subscribe(self, ctx, params: SubscribeRequestParams) -> EmptyResult:
        """Accepted for a URI the caller could read (it is read, so a value of another workspace is
        not found here as on a read); remembered nowhere: see the module's docstring."""
        await self.read(ctx, ReadResourceRequestParams(uri=params.uri))
        return EmptyResult()

    async def unsubscribe(self, ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        self._resolve(self._principal(), str(params.uri), ctx.protocol_version)
        return EmptyResult()

    def changed(self, workspace_id: int, uris: list[str]) -> None:
        """What a write tool changed (``ctx.changed``). A stateless server holds no session a
        ``notifications/resources/updated`` could reach, so this only logs."""
        if uris:
            log.debug("workspace %s: resources changed: %s", workspace_id, ", ".join(uris))
