"""The gate: what every MCP request passes once, whichever path answers it.

Both paths (the lean one, :mod:`mcp_server.lean`, and the SDK's behind the Starlette stack) ask one
:class:`Gate` for everything Poggio decides about a request, and each asks it once:

- **who** calls: the credentials turned into a :class:`~mcp_server.auth.Principal` by the
  :class:`~mcp_server.auth.TokenAuthBackend` (its :class:`~mcp_server.auth.VerifiedCache`, the rate
  limit), the verdict kept in the request's scope so that it is reached once (:meth:`Gate.authenticate`);
- **the body**, read once with the size limit and parsed once (:meth:`Gate.enter`): the parsed
  message goes on in a :class:`Passage`, kept in the request's scope (:data:`GATE`), which the lean
  path answers from and which the stack's :class:`GateMiddleware` finds instead of reading again;
- **refusals before any handler**: the write limit of the write tools a request calls (429) and the
  scope challenge of an OAuth token's call out of its scope (403 ``insufficient_scope``), counted
  once per request whichever path answers;
- **what a principal may see and call**: :meth:`Gate.visible_tools` is the one place where the set
  of tools a principal may list and call is decided (``tools/list`` is filtered by it and cached
  per set, calls of tools outside it are refused); :meth:`Gate.admit_call` refuses a call (scope,
  arguments) or builds the call's :class:`poggio.ToolContext`, which the tool wrapper
  (:func:`mcp_server.binding._bind`) runs with;
- **the record**: usage, the activity record and metrics (:meth:`Gate.count`);
- **the trace** (:mod:`mcp_server.tracing`, off unless ``OTEL_*`` is configured): one span per request.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from mcp_types import CLIENT_INFO_META_KEY
from starlette.requests import HTTPConnection

from mcp_server.admission import Arguments, admitted, client_name, unknown_tool
from mcp_server.asgi import read_body, replay
from mcp_server.auth import VERDICT, Principal, principal_of
from mcp_server.stepup import ScopeChallenge
from poggio.identity import scopes
from poggio.runtime.packs import ToolSpec

GATE = "poggio.gate"  # scope key: this request's Passage, once the gate has read it

LONG_NUMBER = b"0" * 19  # 19 digits and more may be an integer beyond 64 bits
# where orjson and Python's json may read one number differently: digits counted as zeroes
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
# the nesting the SDK's parsers read (pydantic-core's for the legacy generation; json.loads for
# 2026-07-28, short of the interpreter's recursion limit); orjson reads deeper, so a body that may
# nest deeper (more brackets than that, wherever they are) is not the lean path's to answer
MAX_OPENERS = 200
UNREADABLE = object()  # a body that is no JSON (or nested too deep to read)


def parse(body: bytes) -> tuple[Any, bool]:
    """The request body as ``json.loads`` reads it (:data:`UNREADABLE` if it does not), and whether
    the lean path may answer from it: read by orjson where the two agree (not a run of 19 digits,
    which orjson reads as a float; not NaN or lone surrogates, which orjson refuses), and nested no
    deeper than the SDK's own parsers read."""
    if body.count(b"[") + body.count(b"{") > MAX_OPENERS:
        return _standard(body), False
    if LONG_NUMBER in body.translate(DIGITS_AS_ZERO):
        message = _standard(body)
        return message, message is not UNREADABLE
    try:
        return orjson.loads(body), True
    except ValueError:  # orjson.JSONDecodeError: not JSON, or what only json.loads reads (NaN)
        return _standard(body), False


def _standard(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return UNREADABLE


def client_of(params: Any) -> str | None:
    """The client a 2026-07-28 request names in its ``_meta`` (name and version), else None."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return client_name(meta.get(CLIENT_INFO_META_KEY) if isinstance(meta, dict) else None)


class Passage:
    """One request as the gate read it: the principal, the body (``whole``: within the size limit),
    the parsed ``message`` (:data:`UNREADABLE` if no JSON), whether the lean path may answer from it
    (``exact``), and the refusal the gate answers it with, if any (``refused``)."""

    __slots__ = ("principal", "body", "trailing", "whole", "message", "exact", "refused", "span", "fresh")

    def __init__(self, principal: Principal | None, body: bytes, trailing, whole: bool):
        self.principal = principal
        self.body = body
        self.trailing = trailing
        self.whole = whole
        self.message: Any = UNREADABLE
        self.exact = False
        self.refused = None  # a Starlette Response
        self.span = None  # the request's span, when tracing is on
        self.fresh = True  # the body is still to be replayed to the app behind

    def receive(self, receive):
        """What the app behind reads: the body already read, then the rest (once; after that the
        ``receive`` given, already a replay)."""
        if not self.fresh:
            return receive
        self.fresh = False
        return replay(self.body, self.trailing, self.whole, receive)

    def calls(self) -> list[str]:
        """The tool names the message (one, or a batch) calls with ``tools/call``."""
        message = self.message
        messages = message if isinstance(message, list) else [message]
        return [
            m["params"]["name"]
            for m in messages
            if isinstance(m, dict)
            and m.get("method") == "tools/call"
            and isinstance(m.get("params"), dict)
            and isinstance(m["params"].get("name"), str)
        ]


class Gate:
    """See the module. ``backend`` authenticates, ``write_limit`` counts write calls, ``tracing``
    (a :class:`mcp_server.tracing.Tracing`, or None: off) makes the spans."""

    def __init__(
        self,
        registry,
        metrics,
        cursors,
        *,
        backend=None,
        write_limit=None,
        resource_metadata: str | None = None,
        max_body: int = 1_000_000,
        tracing=None,
    ):
        self.registry = registry
        self.metrics = metrics
        self.cursors = cursors
        self.backend = backend
        self.write_limit = write_limit
        self.max_body = max_body
        self.tracing = tracing
        self.challenge = ScopeChallenge(self, resource_metadata)
        self._arguments = {spec.name: Arguments(spec) for spec in registry.tools()}
        self._visible: dict[scopes.PackScope, frozenset[str]] = {}
        self.parses = 0  # bodies parsed: one per request that has a whole body (tests count them)

    # -- who calls -------------------------------------------------------------------------------
    async def authenticate(self, scope) -> Principal | None:
        """The request's principal; None when refused (the refusal, kept in the scope, is what the
        stack's authentication raises and renders as always)."""
        try:
            verdict = await self.backend.authenticate(HTTPConnection(scope))
        except Exception as exc:  # a refusal (or a failure) that the stack renders as it always has
            scope[VERDICT] = exc
            return None
        scope[VERDICT] = verdict
        return verdict[1].access_token.claims["principal"]

    # -- the body, once --------------------------------------------------------------------------
    async def enter(self, scope, receive, principal: Principal | None) -> Passage | None:
        """This request's :class:`Passage`: read (once, with the size limit), parsed (once), and
        judged by the write limit and the scope challenge (once); None if the client went away."""
        passage = scope.get(GATE)
        if passage is not None:
            return passage
        started = time.time_ns() if self.tracing is not None else 0
        read = await read_body(receive, self.max_body)
        if read is None:
            return None  # the client went away
        passage = scope[GATE] = Passage(principal, *read)
        if passage.whole:
            self.parses += 1
            passage.message, passage.exact = parse(passage.body)
        if self.tracing is not None:  # (the span's parent may be in the body's _meta)
            self.tracing.start(passage, scope, started)
        if passage.whole and principal is not None:
            passage.refused = await self._refusal(principal, passage)
        return passage

    async def _refusal(self, principal: Principal, passage: Passage):
        """The write limit (first: a call out of scope counts too), then the scope challenge."""
        names = passage.calls()
        if not names:
            return None
        if self.write_limit is not None and any(n in self.write_limit.write_tools for n in names):
            refused = await self.write_limit.refusal(principal, names)
            if refused is not None:
                return refused
        message = passage.message
        if principal.token.kind == "grant" and isinstance(message, dict):
            spec = self.registry.tool(names[0])
            if spec is not None:
                return self.challenge.refusal(principal, spec, client_of(message.get("params")))
        return None

    # -- what a principal may see and call ------------------------------------------------------
    def visible_tools(self, principal: Principal) -> frozenset[str]:
        """The names of the tools ``principal`` may list and call: the one place this is decided
        (``tools/list`` shows these, and a call of any other tool is refused)."""
        scope = principal.token.scope
        visible = self._visible.get(scope)
        if visible is None:
            visible = frozenset(
                t.name for t in self.registry.tools() if scopes.may_see(t.pack, t.read_only, scope, t.name)
            )
            if len(self._visible) >= 1024:  # a scope holds its workspace's switched-off tools: keys come and go
                self._visible.clear()
            self._visible[scope] = visible
        return visible

    def refusal(self, principal: Principal, spec: ToolSpec, arguments: Any) -> tuple[str, str] | None:
        """Why ``principal`` may not call ``spec`` with ``arguments`` (a tool error's text) and how
        the activity record calls it (``refused``: not among its visible tools; ``tool_error``: bad
        arguments), or None."""
        if spec.name not in self.visible_tools(principal):
            token = principal.token
            if scopes.switched_away(spec.name, token.scope):  # switched off, or narrowed away: as if unknown
                return unknown_tool(spec.name), "refused"
            why = scopes.refusal(spec.name, spec.pack, spec.read_only, token.scope)
            return why or f"Tool {spec.name} is not available to this token.", "refused"
        problem = self._arguments[spec.name].problem(arguments)
        return None if problem is None else (problem, "tool_error")

    def admit_call(self, principal: Principal, spec: ToolSpec, arguments: Any) -> tuple[str, str] | None:
        """:meth:`refusal`; when there is none, the call's :class:`poggio.ToolContext` is built for
        the tool wrapper to run with (the wrapper runs nothing without it)."""
        found = self.refusal(principal, spec, arguments)
        if found is None:
            admitted.set(self.tool_context(principal, spec))
        return found

    def tool_context(self, principal: Principal, spec: ToolSpec):
        token = principal.token
        return self.registry.tool_context(
            self.cursors,
            token.workspace_id,
            token.token_id,
            token.packs,
            spec.name,
            writable=token.writable,
            caller=token.name,
            token_kind=token.kind,
        )

    # -- the record ------------------------------------------------------------------------------
    def count(self, principal: Principal, label: str, ok: bool, client: str | None, outcome: str | None = None) -> None:
        """Count one request of ``principal`` (usage, the activity record, metrics) under ``label``."""
        outcome = outcome or ("ok" if ok else "tool_error")
        principal.record(label, outcome, client)
        self.metrics.request(label, ok).inc()
        if self.tracing is not None:
            self.tracing.outcome(label, outcome)


class GateMiddleware:
    """ASGI middleware behind authentication, in front of the SDK's endpoint: the gate for the
    requests that did not pass it at the front door (with an ``Origin``, an odd header, a body
    over the limit); for those that did, it finds their :class:`Passage` and lets them through."""

    def __init__(self, app, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        owner = GATE not in scope
        passage = await self.gate.enter(scope, receive, principal_of(scope))
        if passage is None:
            return
        tracing = self.gate.tracing
        if owner and tracing is not None:
            send = tracing.watch(passage, send)
        try:
            if passage.refused is not None:
                await passage.refused(scope, receive, send)
            else:
                await self.app(scope, passage.receive(receive), send)
        finally:
            if owner and tracing is not None:
                tracing.end(passage)
