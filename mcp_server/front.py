"""The front door of ``POST /mcp``: the hot requests answered before the Starlette stack.

Starlette's error and exception middleware, its router, CORS, the protocol-version check and the
three authentication layers cost more per request than a lean ``tools/list`` does, and none of
them changes the answer to an ordinary authenticated POST without an ``Origin``. :class:`Front`
takes such a POST, passes it through the gate (:class:`~mcp_server.gate.Gate`: the credentials,
the body read and parsed once, the write limit and the scope challenge) and lets
:class:`~mcp_server.lean.LeanPath` answer it. Everything else goes through the whole stack as
before, carrying what the gate found so that nothing is done twice: the stack's backend returns or
raises the verdict found in the scope (:data:`mcp_server.auth.VERDICT`), and the stack's
:class:`~mcp_server.gate.GateMiddleware` finds the request's passage. ``tests/test_lean_path.py`` compares the
answers with a server that has neither this front nor the lean path.
"""

from __future__ import annotations

import json
import logging

from mcp.server.auth.middleware.auth_context import auth_context_var

from mcp_server.asgi import first_headers, send_answer
from mcp_server.auth import VERDICT
from mcp_server.gate import Gate, Passage
from mcp_server.lean import DECLINED, LeanPath

log = logging.getLogger(__name__)

INTERNAL_ERROR = json.dumps(
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "Internal error: it has been logged"}}
).encode()


class Front:
    """ASGI app around the whole server application (``app``)."""

    def __init__(self, app, lean: LeanPath, gate: Gate, path: str, versions: tuple[str, ...]):
        self.app = app
        self.lean = lean
        self.gate = gate
        self.path = path
        self.versions = frozenset(v.encode("latin-1") for v in versions)

    def _mine(self, scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return False
        for key, value in scope["headers"]:
            if key == b"origin":  # a browser's request: CORS headers to add, the stack's job
                return False
            if key == b"mcp-protocol-version" and value not in self.versions:
                return False  # the stack's KnownProtocolVersion words the refusal
        return True

    async def __call__(self, scope, receive, send):
        if not self._mine(scope):
            return await self.app(scope, receive, send)
        principal = await self.gate.authenticate(scope)  # a refusal is the stack's to render
        if principal is None and self.gate.tracing is not None:
            return await self.gate.tracing.unauthenticated(scope, self.app, receive, send)
        if principal is None or not self.lean.may_answer(scope):
            scope[DECLINED] = True
            self.lean.declined.inc()
            return await self.app(scope, receive, send)  # the gate's middleware in the stack reads it
        passage = await self.gate.enter(scope, receive, principal)
        if passage is None:
            return  # the client went away
        tracing = self.gate.tracing
        if tracing is not None:
            send = tracing.watch(passage, send)
        try:
            await self._answer(scope, receive, send, passage)
        finally:
            if tracing is not None:
                tracing.end(passage)

    async def _answer(self, scope, receive, send, passage: Passage):
        if passage.refused is not None:  # over the write limit, or out of an OAuth token's scope
            return await passage.refused(scope, receive, send)
        answer = None
        if passage.whole:
            verdict = scope[VERDICT]
            scope["user"], scope["auth"] = verdict[1], verdict[0]
            reset = auth_context_var.set(verdict[1])  # what the SDK's AuthContextMiddleware sets
            try:
                answer = await self.lean.answer(scope, first_headers(scope), passage)
            except Exception:
                log.exception("the lean MCP path failed on a request")
                await send_answer(
                    send,
                    (
                        500,
                        [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(INTERNAL_ERROR)).encode()),
                        ],
                        INTERNAL_ERROR,
                    ),
                )
                return
            finally:
                auth_context_var.reset(reset)
        if answer is None:
            scope[DECLINED] = True
            self.lean.declined.inc()
            return await self.app(scope, passage.receive(receive), send)
        await send_answer(send, answer)
