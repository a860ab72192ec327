"""Per-token rate limits: 429 with Retry-After, per process in memory, shared across processes through Redis."""

from __future__ import annotations

import httpx
import pytest
from helpers import clear_of_the_minute_turn
from instances import REDIS_URL, ServerProcess

from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor


def tools_list(server, token) -> httpx.Response:
    return httpx.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
        },
        timeout=10,
    )


@pytest.fixture
def tokens(instance):
    ws = create_workspace("acme", "Acme", True, Actor.cli())
    service = TokenService()
    return service.create(ws, "busy", Actor.cli()).plaintext, service.create(ws, "calm", Actor.cli()).plaintext


def test_limit_is_per_token_with_retry_after(instance, tokens):
    busy, calm = tokens
    server = ServerProcess(instance, extra_env={"POGGIO_RATE_LIMIT": "5/minute"})
    try:
        clear_of_the_minute_turn()
        statuses = [tools_list(server, busy).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        refused = tools_list(server, busy)
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
        assert refused.json()["error"] == "rate_limited"
        assert tools_list(server, calm).status_code == 200  # another token is not slowed down
    finally:
        server.stop()


@pytest.mark.redis
def test_limit_is_shared_across_processes_through_redis(instance, tokens):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    busy, _ = tokens
    env = {"POGGIO_RATE_LIMIT": "6/minute", "POGGIO_REDIS_URL": REDIS_URL}
    one, two = ServerProcess(instance, extra_env=env), ServerProcess(instance, extra_env=env)
    try:
        clear_of_the_minute_turn()
        statuses = [tools_list(server, busy).status_code for server in (one, two) * 4]
        assert statuses == [200] * 6 + [429, 429]
    finally:
        one.stop()
        two.stop()


def test_local_windows_decide_as_the_limits_library_does(monkeypatch):
    """Without Redis, LocalWindows counts: it must say yes and no exactly where ``limits``' own
    sliding window counter (memory storage) does, over a timeline crossing several windows."""
    import asyncio
    import random
    import time

    from limits import parse
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

    from mcp_server.ratelimit import LocalWindows

    clock = [1_700_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    rng = random.Random(7)
    item = parse("10/minute")
    reference = SlidingWindowCounterRateLimiter(MemoryStorage())
    local = LocalWindows()

    seen = []

    async def compare():
        for _ in range(2000):
            clock[0] += rng.choice([0.0, 0.0, 0.1, 0.3, 1.0, 2.0, 7.0, 70.0])
            key = rng.choice(["a", "b"])
            expected = await reference.hit(item, key)
            seen.append(expected)
            assert local.hit(item.key_for(key), item.amount, item.get_expiry()) == expected, clock[0]
            if not expected:
                reset, _ = await reference.get_window_stats(item, key)
                assert abs((reset - clock[0]) - local.reset_in(item.key_for(key), item.get_expiry())) < 1e-6

    asyncio.run(compare())
    assert seen.count(True) > 100 and seen.count(False) > 100  # both answers, many times
