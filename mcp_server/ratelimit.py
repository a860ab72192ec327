"""Per-token request limits with the `limits` library: in memory per process by default, shared by
every process and host when ``POGGIO_REDIS_URL`` points at Redis.

The strategy is the sliding window counter: two counters per token, constant work per request. The
moving window keeps one entry per request in the window, and its in-memory storage inserts at the
front of a list and trims it in a worker thread, so its cost grew with the limit (at 100,000/minute
it outweighed the rest of a request).

Without Redis the counters live in this process, in :class:`LocalWindows`: the same sliding
window counter arithmetic as ``limits``' memory storage, kept in a plain dict read on the event
loop's thread: ``limits``' asynchronous memory storage (locks, expiry bookkeeping, key strings)
was a noticeable part of a whole ``tools/list`` answer (benchmarks/README.md)."""

from __future__ import annotations

import functools
import json
import time
from math import floor, inf
from typing import cast

from limits import parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from redis.exceptions import RedisError
from starlette.responses import Response


class LocalWindows:
    """Sliding window counters of one process (see the module's docstring): per key, the number of
    hits in the current fixed window and in the one before it, which counts for the part of it
    still inside the sliding window. For one thread: no lock."""

    def __init__(self):
        self._windows: dict[str, tuple[int, int, int]] = {}  # key -> (window number, previous, current)

    def _counts(self, key: str, expiry: int, now: float) -> tuple[int, int, int, float]:
        number = int(now // expiry)
        window = self._windows.get(key)
        if window is None or window[0] < number - 1:
            previous, current = 0, 0
        elif window[0] == number - 1:
            previous, current = window[2], 0
        else:
            previous, current = window[1], window[2]
        return number, previous, current, (number + 1) * expiry - now  # left of the current window

    def hit(self, key: str, limit: int, expiry: int) -> bool:
        now = time.time()
        number, previous, current, left = self._counts(key, expiry, now)
        if floor(previous * left / expiry + current) + 1 > limit:
            return False
        if len(self._windows) >= 100_000:  # keys are verified tokens: never that many in practice
            self._windows = {k: w for k, w in self._windows.items() if w[0] >= number - 1}
        self._windows[key] = (number, previous, current + 1)
        return True

    def reset_in(self, key: str, expiry: int) -> float:
        """Seconds until one more hit could pass (as ``limits`` computes a sliding window's reset)."""
        _, previous, current, left = self._counts(key, expiry, time.time())
        previous_reset = left % (expiry / previous) if previous else inf
        current_reset = left % expiry if current else inf
        return min(previous_reset, current_reset) if (previous or current) else 0.0


class StoreUnavailable(Exception):
    """The shared counters (Redis) cannot be reached: requests are refused (503) until they can,
    rather than let through uncounted."""

    MESSAGE = (
        "This server cannot reach Redis (POGGIO_REDIS_URL), where it counts each token's requests "
        "against its rate limit, so it refuses requests until Redis answers again; try again shortly. "
        "Administrators: check that Redis is running and reachable."
    )
    RETRY_AFTER = 5

    def response(self) -> Response:
        payload = {
            "error": "temporarily_unavailable",
            "error_description": self.MESSAGE,
            "retry_after": self.RETRY_AFTER,
        }
        return Response(
            json.dumps(payload),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": str(self.RETRY_AFTER)},
        )


class TokenRateLimit:
    def __init__(self, limit: str, redis_url: str | None = None, namespace: str = "poggio"):
        self.item = parse(limit)
        self.namespace = namespace
        self.local = None if redis_url else LocalWindows()
        if redis_url:
            # an "async+" URL gives an asynchronous storage; the factory is typed for either kind
            self.storage = cast(AsyncStorage, storage_from_string(f"async+{redis_url}", implementation="redispy"))
            self.limiter = SlidingWindowCounterRateLimiter(self.storage)

    async def reachable(self) -> bool:
        """Whether the counters can be kept: always in this process; with Redis, whether it answers."""
        if self.local is not None:
            return True
        try:
            return bool(await self.storage.check())
        except Exception:
            return False

    async def retry_after(self, token_id: int | str, own: str | None = None) -> int | None:
        """Count one request of the token; seconds to wait when it is over its limit (the token's
        ``own``, set below the installation's, else the installation's), else None."""
        key = f"{self.namespace}:mcp:token:{token_id}"
        item = self.item if own is None else _parsed(own)
        if self.local is not None:
            if self.local.hit(key, item.amount, item.get_expiry()):
                return None
            return max(1, int(self.local.reset_in(key, item.get_expiry())) + 1)
        try:
            if await self.limiter.hit(item, key):
                return None
            reset, _ = await self.limiter.get_window_stats(item, key)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from None
        return max(1, int(reset - time.time()) + 1)


@functools.lru_cache(maxsize=256)
def _parsed(limit: str):
    return parse(limit)


class WriteLimit:
    """Each call of a write tool counts against its token's write limit (``POGGIO_WRITE_RATE_LIMIT``),
    besides its limit of all requests; over it, the answer is 429 with ``Retry-After``. Only calls of
    write tools count, so reads never use up the writes' allowance. Asked by the gate
    (:class:`mcp_server.gate.Gate`), once per request whichever path answers it."""

    def __init__(self, limit: TokenRateLimit, write_tools: set[str]):
        self.limit = limit
        self.write_tools = frozenset(write_tools)

    async def refusal(self, principal, names: list[str]) -> Response | None:
        """Count the calls of write tools among ``names`` for ``principal``: the 429 answer when one
        is over the limit, else None."""
        writes = [name for name in names if name in self.write_tools]
        for _ in writes:
            try:
                wait = await self.limit.retry_after(f"write:{principal.token.kind}:{principal.token.token_id}")
            except StoreUnavailable as exc:
                return exc.response()
            if wait is not None:
                principal.record(writes[0], "rate_limited")  # on the activity record, as any refusal
                payload = {
                    "error": "rate_limited",
                    "retry_after": wait,
                    "error_description": f"Too many changes with this token: at most "
                    f"{self.limit.item} write tool calls; try again in {wait} s.",
                }
                return Response(
                    json.dumps(payload),
                    status_code=429,
                    media_type="application/json",
                    headers={"Retry-After": str(wait)},
                )
        return None
