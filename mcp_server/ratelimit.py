"""Per-token request limits with the `limits` library: in memory per process by default, shared by
every process and host when ``POGGIO_REDIS_URL`` points at Redis.

The strategy is the sliding window counter: two counters per token, constant work per request. The
moving window keeps one entry per request in the window, and its in-memory storage inserts at the
front of a list and trims it in a worker thread, so its cost grew with the limit (at 100,000/minute
it outweighed the rest of a request)."""

from __future__ import annotations

import functools
import json
import time

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.responses import Response


class TokenRateLimit:
    def __init__(self, limit: str, redis_url: str | None = None, namespace: str = "poggio"):
        self.item = parse(limit)
        self.namespace = namespace
        storage = storage_from_string(f"async+{redis_url}", implementation="redispy") if redis_url else MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    async def retry_after(self, token_id: int | str, own: str | None = None) -> int | None:
        """Count one request of the token; seconds to wait when it is over its limit (the token's
        ``own``, set below the installation's, else the installation's), else None."""
        key = f"{self.namespace}:mcp:token:{token_id}"
        item = self.item if own is None else _parsed(own)
        if await self.limiter.hit(item, key):
            return None
        reset, _ = await self.limiter.get_window_stats(item, key)
        return max(1, int(reset - time.time()) + 1)


@functools.lru_cache(maxsize=256)
def _parsed(limit: str):
    return parse(limit)
def tools_called(body: bytes) -> list[str]:
    """The tool names a JSON-RPC request body (one message or a batch) calls with ``tools/call``."""
    if b"tools/call" not in body:
        return []
    try:
        message = json.loads(body)
    except ValueError:
        return []
    messages = message if isinstance(message, list) else [message]
    return [m["params"]["name"] for m in messages
            if isinstance(m, dict) and m.get("method") == "tools/call" and isinstance(m.get("params"), dict)
            and isinstance(m["params"].get("name"), str)]


class WriteRateLimit:
    """ASGI middleware behind authentication: each call of a write tool counts against the token's
    write limit (``POGGIO_WRITE_RATE_LIMIT``), besides its limit of all requests; over it, the answer
    is 429 with ``Retry-After``. Only requests that call a write tool are counted, so reads never
    use up the writes' allowance."""

    def __init__(self, app, limit: TokenRateLimit, write_tools: set[str], principal_of):
        self.app = app
        self.limit = limit
        self.write_tools = frozenset(write_tools)
        self.principal_of = principal_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not self.write_tools:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        writes = [name for name in tools_called(body) if name in self.write_tools]
        principal = self.principal_of(scope) if writes else None
        if principal is not None:
            for _ in writes:
                wait = await self.limit.retry_after(f"write:{principal.token.kind}:{principal.token.token_id}")
                if wait is not None:
                    principal.record(writes[0], "rate_limited")  # on the activity record, as any refusal
                    payload = {"error": "rate_limited", "retry_after": wait,
                               "error_description": f"Too many changes with this token: at most "
                                                    f"{self.limit.item} write tool calls; try again in {wait} s."}
                    await Response(json.dumps(payload), status_code=429, media_type="application/json",
                                   headers={"Retry-After": str(wait)})(scope, receive, send)
                    return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
