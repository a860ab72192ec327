"""What a tool pack builds with: its declaration, tools, results, errors, cursors and CSV kinds.
Imported by packs (``from poggio import tool, ToolContext, ...``); imports no web
framework and no MCP SDK: the MCP server turns these into MCP tools.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from poggio.runtime.results import Icon, ToolError, ToolResult, output_model
from poggio.runtime.writes import IDEMPOTENCY_PARAMETER, run_write


@dataclass(frozen=True)
class PackInfo:
    """A pack's declaration, returned by its ``poggio_pack`` hook.

    ``requires``: the packs whose public names (and models) this one uses; it loads after them and is
    left out without them. ``instructions``: a sentence or two for the LLM on when to use the pack's
    tools; the MCP server's instructions are assembled from every loaded pack's. ``hookspecs``: a
    module or class of functions marked with :data:`poggio.hookspec`: hooks this pack owns and
    calls (:meth:`ToolContext.call_hook`), which other packs implement."""

    name: str
    title: str
    version: str
    description: str = ""
    requires: tuple[str, ...] = ()
    instructions: str = ""
    hookspecs: ModuleType | type | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    fn: Callable[..., ToolResult[Any]]
    title: str
    description: str
    read_only: bool
    idempotent: bool
    open_world: bool
    output_model: type[BaseModel] | None
    pack: str = ""
    thread: bool = False  # run in a worker thread, never on the MCP server's event loop
    destructive: bool = False
    icons: tuple[Icon, ...] = ()
    app: str | None = None  # the ui:// resource of the tool's MCP App view, if it has one
    progress: bool = False  # reports progress (ctx.progress): streamed when the caller sent a progressToken
    logs: bool = False  # sends log notices (ctx.log): streamed when the caller asked for them

    def with_pack(self, pack: str) -> ToolSpec:
        return ToolSpec(**{**self.__dict__, "pack": pack})

    def parameters(self) -> list[inspect.Parameter]:
        """The tool's arguments as callers see them: its own (without the context) and, for a write
        tool, the ``idempotency_key`` every write tool takes (:mod:`poggio.runtime.writes` handles it)."""
        params = list(inspect.signature(self.fn, eval_str=True).parameters.values())[1:]
        if not self.read_only and "idempotency_key" not in {p.name for p in params}:
            params.append(IDEMPOTENCY_PARAMETER)
        return params

    def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult[Any]:
        """Run the tool with checked arguments; a write tool in one write transaction, answered once
        per idempotency key (:func:`poggio.runtime.writes.run_write`)."""
        if self.read_only:
            return self.fn(ctx, **arguments)
        return run_write(self, ctx, arguments)

    def __call__(self, ctx: ToolContext, **arguments: Any) -> ToolResult[Any]:
        """Run the tool as the MCP server does, without its argument checks (for tests)."""
        return self.run(ctx, arguments)


def tool(
    *,
    title: str,
    read_only: bool = True,
    idempotent: bool = True,
    open_world: bool = False,
    name: str | None = None,
    destructive: bool = False,
    thread: bool | None = None,
    icons: list[Icon] | tuple[Icon, ...] = (),
    app: str | None = None,
    progress: bool = False,
    logs: bool = False,
) -> Callable[[Callable[..., ToolResult[Any]]], ToolSpec]:
    """Mark a function as a tool. Its docstring is the description the client (and the LLM) reads.
    ``read_only=False`` makes it a write tool: listed and callable only with write access to its pack,
    run in one write transaction, with an ``idempotency_key`` argument. ``destructive``: it may change
    or overwrite what is there (an update), not only add.

    On SQLite the MCP server runs a read tool's database work on its event loop (cheaper than the hop
    to a thread; the per-call timeout stops its SQL). A tool that may block otherwise (a network call,
    a long computation) must say ``thread=True``; ``open_world=True`` (it reaches outside Poggio) and
    write tools (they may wait for the write lock) imply it unless ``thread=False`` is given.
    ``app``: the ``ui://`` URI of an MCP App view (:func:`poggio.app_view`) a host may show with the
    tool's result (``_meta.ui.resourceUri``); the pack serves it from ``poggio_resources``.

    ``progress=True``: the tool reports progress (``ctx.progress``); ``logs=True``: it sends log
    notices (``ctx.log``). A call that asks for them is answered as an event stream and runs in a
    worker thread; every other call is answered as before, and the notices go nowhere.
    ``icons``: :class:`Icon` objects (or mappings of their fields) a client may show beside the tool."""
    if app is not None and not (isinstance(app, str) and app.startswith("ui://")):
        raise ValueError(f"a tool's app is the ui:// URI of an app view, not {app!r}")

    def decorate(fn: Callable[..., ToolResult[Any]]) -> ToolSpec:
        hints = typing.get_type_hints(fn)
        output = hints.get("return")
        description = inspect.getdoc(fn)
        if not description:
            raise TypeError(f"tool {fn.__name__} needs a docstring: it is the description clients show")
        return ToolSpec(
            name=name or fn.__name__,
            fn=fn,
            title=title,
            description=description,
            read_only=read_only,
            idempotent=idempotent,
            open_world=open_world,
            destructive=destructive and not read_only,
            output_model=output_model(output),
            thread=(open_world or not read_only) if thread is None else thread,
            icons=tuple(i if isinstance(i, Icon) else Icon(**i) for i in icons),
            app=app,
            progress=progress,
            logs=logs,
        )

    return decorate


@dataclass
class CsvKind:
    """A kind of CSV row a pack imports.

    ``validate(workspace_id, rows)`` gets ``[(line_number, {column: value})]`` and returns
    ``(cleaned, errors)`` with errors as ``[(line_number, column, message)]``;
    ``write(workspace_id, cleaned)`` inserts them (inside the caller's transaction) and returns
    how many rows it wrote."""

    kind: str
    columns: tuple[str, ...]
    validate: Callable[[int, list[tuple[int, dict[str, str]]]], tuple[list[Any], list[tuple[int, str, str]]]]
    write: Callable[[int, list[Any]], int]


class CursorCodec:
    """Opaque pagination cursors, signed and bound to the workspace, the tool and the query's
    filters: a cursor from another workspace, another tool or another query, or one altered in any
    byte, is refused."""

    def __init__(self, key: bytes):
        self._key = hashlib.sha256(b"poggio-cursor:" + key).digest()

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()[:18]).decode()

    @staticmethod
    def _fingerprint(query: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def encode(self, workspace_id: int, tool: str, query: dict[str, Any], position: list[Any]) -> str:
        payload = json.dumps(
            {"w": workspace_id, "t": tool, "q": self._fingerprint(query), "p": position},
            separators=(",", ":"),
            default=str,
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def decode(self, cursor: str, workspace_id: int, tool: str, query: dict[str, Any]) -> list[Any]:
        bad = ToolError("cursor", "not a cursor of this query: pass back the next_cursor of the same call unchanged")
        if not isinstance(cursor, str) or len(cursor) > 2000 or cursor.count(".") != 1:
            raise bad
        body, signature = cursor.split(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            raise bad from None
        if not hmac.compare_digest(self._sign(payload), signature):
            raise bad
        data = json.loads(payload)
        if data.get("w") != workspace_id or data.get("t") != tool or data.get("q") != self._fingerprint(query):
            raise bad
        return data["p"]


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call: the token's workspace and pack scope, and a way to call a
    hook on the packs in that scope. Frozen: a tool cannot change whom it works for."""

    workspace_id: int
    token_id: int | None
    packs: frozenset[str] | None
    cursors: CursorCodec = field(repr=False)
    tool_name: str = ""
    hooks: Callable[..., list[tuple[str, Any]]] | None = field(default=None, repr=False, compare=False)
    writable: frozenset[str] = frozenset()
    caller: str = ""  # who calls, for the audit log: the token's or the connected app's name
    token_kind: str = "token"  # "token" (token_id is an API token's id) or "grant" (an OAuth grant's)
    changes: list[str] | None = field(default=None, repr=False, compare=False)

    def changed(self, *uris: str) -> None:
        """Say that this write changed the records behind resource ``uris``
        (``ctx.changed("poggio://accounts/acme.com")``): a client subscribed to one of them is sent
        ``notifications/resources/updated`` where the server can reach it (docs/pack-authors/resources.md)."""
        if self.changes is not None:
            self.changes.extend(u for u in uris if isinstance(u, str) and u not in self.changes)

    reporter: Any = field(default=None, repr=False, compare=False)  # progress and log notices of this call

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Tell the client how far the call is (``done`` of ``total``, non-decreasing). Delivered
        while the call runs when the tool says ``@tool(..., progress=True)`` and the client asked
        for progress (a ``progressToken``); otherwise it costs nothing and goes nowhere."""
        if self.reporter is not None:
            self.reporter.progress(done, total, message)

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Send the client a log notice (``debug``, ``info``, ``notice``, ``warning``, ``error``,
        ...) about this call, with optional JSON ``data``. Delivered while the call runs when the
        tool says ``@tool(..., logs=True)`` and the client asked for notices at that level (see
        docs/pack-authors/prompts.md, "Progress and logging"); otherwise it goes nowhere. Never put
        secrets in it."""
        if self.reporter is not None:
            self.reporter.log(level, message, data)

    def record_change(self, target: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        """Put a write on record in the audit log (in the write's own transaction): the record
        (``target``, e.g. ``account example.com``), its fields ``before`` (``None`` when created) and
        ``after``, this call's tool and token or grant. Every write tool calls it once per record changed."""
        from poggio.records.audit import record_write

        record_write(self, target, before, after)

    def encode_cursor(self, query: dict[str, Any], position: list[Any]) -> str:
        return self.cursors.encode(self.workspace_id, self.tool_name, query, position)

    def decode_cursor(self, cursor: str | None, query: dict[str, Any]) -> list[Any] | None:
        if cursor in (None, ""):
            return None
        return self.cursors.decode(cursor, self.workspace_id, self.tool_name, query)

    def call_hook(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` (usually one the calling pack owns) on every loaded pack in this call's scope
        that implements it, in dependency order: ``[(pack name, result)]``, leaving out ``None``
        results. A pack that raises is logged and left out of this answer; the others still answer."""
        return [] if self.hooks is None else self.hooks(hook, self.packs, **kwargs)
