"""Sign-in throttling with the `limits` library: per account and per IP, shared through Redis when
``POGGIO_REDIS_URL`` is set (several portal processes), in memory otherwise."""

from __future__ import annotations

import time

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

PER_ACCOUNT = parse("5/15 minutes")
PER_IP = parse("20/15 minutes")

class Throttle:
    def __init__(self, redis_url: str | None = None):
        storage = storage_from_string(redis_url) if redis_url else MemoryStorage()
        self.limiter = MovingWindowRateLimiter(storage)

    def blocked(self, email: str, ip: str) -> int | None:
        """Seconds to wait if either limit is spent, else None."""
        for item, key in ((PER_ACCOUNT, f"signin:acct:{email.lower()}"), (PER_IP, f"signin:ip:{ip}")):
            if not self.limiter.test(item, key):
                reset, _ = self.limiter.get_window_stats(item, key)

                return max(1, int(reset - time.time()))
        return None

    def failed(self, email: str, ip: str) -> None:
        self.limiter.hit(PER_ACCOUNT, f"signin:acct:{email.lower()}")
        self.limiter.hit(PER_IP, f"signin:ip:{ip}")

    def succeeded(self, email: str) -> None:
        self.limiter.clear(PER_ACCOUNT, f"signin:acct:{email.lower()}")
