"""Per-token request limits with the `limits` library: in memory per process by default, shared by
every process and host when ``POGGIO_REDIS_URL`` points at Redis.

The strategy is the sliding window counter: two counters per token, constant work per request. The
moving window keeps one entry per request in the window, and its in-memory storage inserts at the
front of a list and trims it in a worker thread, so its cost grew with the limit (at 100,000/minute
it outweighed the rest of a request)."""

from __future__ import annotations

import functools
import time

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


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
