"""Bodies the SDK cannot read as JSON put on the activity record.

The SDK answers a body that is not JSON, or nested deeper than its parser reads, with a JSON-RPC
parse error (-32700, HTTP 400) before any handler, so Poggio's :class:`~mcp_server.binding.ScopeMiddleware`
never sees it. :class:`RecordUnreadable` stands around the SDK's endpoint (behind authentication)
and records each such answer for the calling token, as ``other`` with the outcome ``tool_error``:
junk sent with a valid token shows on its activity like any other refused request.
"""

from __future__ import annotations

PARSE_ERROR = b'"code":-32700'


class RecordUnreadable:
    """ASGI app around the SDK's endpoint: records its parse-error answers (see the module)."""

    def __init__(self, app, principal_of):
        self.app = app
        self.principal_of = principal_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = False

        async def watched(message):
            nonlocal refused
            if message["type"] == "http.response.start":
                refused = message["status"] == 400
            elif refused and message["type"] == "http.response.body" and PARSE_ERROR in message.get("body", b""):
                refused = False
                principal = self.principal_of(scope)
                if principal is not None:
                    principal.record("other", "tool_error")
            await send(message)

        await self.app(scope, receive, watched)
