"""The front door of ``POST /mcp``: the hot requests answered before the Starlette stack.

Starlette's error and exception middleware, its router, CORS, the protocol-version check and the
three authentication layers cost more per request than a lean ``tools/list`` does, and none of
them changes the answer to an ordinary authenticated POST without an ``Origin``. :class:`Front`
takes such a POST, authenticates it once with the same :class:`~mcp_server.auth.TokenAuthBackend`,
and lets :class:`~mcp_server.lean.LeanPath` answer it. Everything else, every refusal included,
goes through the whole stack as before, carrying the verdict so that the token is checked (and
counted against its rate limit) only once: the stack's backend returns or raises the verdict
found in the scope (:data:`mcp_server.auth.VERDICT`). ``tests/test_lean_path.py`` compares the
answers with a server that has neither this front nor the lean path.
"""

from __future__ import annotations

import json
import logging

from mcp.server.auth.middleware.auth_context import auth_context_var
from starlette.requests import HTTPConnection

from mcp_server.asgi import first_headers, read_body, replay, send_answer
from mcp_server.auth import VERDICT, TokenAuthBackend
from mcp_server.lean import DECLINED, LeanPath

log = logging.getLogger(__name__)

INTERNAL_ERROR = json.dumps(
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "Internal error: it has been logged"}}
).encode()


class Front:
    """ASGI app around the whole server application (``app``)."""

    def __init__(self, app, lean: LeanPath, backend: TokenAuthBackend, path: str, versions: tuple[str, ...]):
        self.app = app
        self.lean = lean
        self.backend = backend
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
        try:
            verdict = await self.backend.authenticate(HTTPConnection(scope))
        except Exception as exc:  # a refusal (or a failure) that the stack renders as it always has
            scope[VERDICT] = exc
            return await self.app(scope, receive, send)
        scope[VERDICT] = verdict
        if not self.lean.may_answer(scope):
            scope[DECLINED] = True
            self.lean.declined.inc()
            return await self.app(scope, receive, send)
        read = await read_body(receive, self.lean.max_body)
        if read is None:
            return  # the client went away
        body, trailing, whole = read
        answer = None
        if whole:
            scope["user"], scope["auth"] = verdict[1], verdict[0]
            reset = auth_context_var.set(verdict[1])  # what the SDK's AuthContextMiddleware sets
            try:
                answer = await self.lean.answer(scope, first_headers(scope), body)
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
            return await self.app(scope, replay(body, trailing, whole, receive), send)
        await send_answer(send, answer)
