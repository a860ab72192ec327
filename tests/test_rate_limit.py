"""Per-token rate limits: 429 with Retry-After, per process in memory, shared across processes through Redis."""

from __future__ import annotations

import httpx
import pytest
from instances import REDIS_URL, ServerProcess

from poggio.audit import Actor
from poggio.tokens import TokenService
from poggio.workspaces import create_workspace


def tools_list(server, token) -> httpx.Response:
    return httpx.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                               "MCP-Protocol-Version": "2025-06-18"}, timeout=10)


@pytest.fixture
def tokens(instance):
    ws = create_workspace("acme", "Acme", True, Actor.cli())
    service = TokenService()
    return service.create(ws, "busy", Actor.cli()).plaintext, service.create(ws, "calm", Actor.cli()).plaintext


def test_limit_is_per_token_with_retry_after(instance, tokens):
    busy, calm = tokens
    server = ServerProcess(instance, extra_env={"POGGIO_RATE_LIMIT": "5/minute"})
    try:
        statuses = [tools_list(server, busy).status_code for _ in range(7)]
        # the sliding window counter weighs the previous minute's requests by the part of it still in
        # the window, rounded down: a run across the minute's turn may get one request more
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:], statuses
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
        statuses = [tools_list(server, busy).status_code for server in (one, two) * 4]
        assert statuses == [200] * 6 + [429, 429]
    finally:
        one.stop()
        two.stop()
