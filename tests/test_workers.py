"""Several uvicorn workers behind one port: /metrics reports the whole server, and rate limits that
would multiply with the workers (no Redis) are refused or warned about at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from instances import ROOT, ServerProcess, free_port

from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor

REDIS_URL = "redis://127.0.0.1:6379/0"
METRICS_TOKEN = "metrics-secret-for-tests"


def tools_list(server, token) -> httpx.Response:
    # a new connection per request, so the kernel spreads them over the workers
    with httpx.Client() as http:
        return http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-11-25",
            },
            timeout=10,
        )


def scrape(server, token: str | None = METRICS_TOKEN) -> httpx.Response:
    with httpx.Client() as http:
        return http.get(
            f"{server.url}/metrics", timeout=10, headers={"Authorization": f"Bearer {token}"} if token else {}
        )


def tools_list_count(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("poggio_mcp_requests_total{") and 'method="tools/list"' in line and 'outcome="ok"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def token(instance):
    ws = create_workspace("acme", "Acme", True, Actor.cli())
    return TokenService().create(ws, "t", Actor.cli()).plaintext


def test_metrics_need_the_metrics_token_and_cover_every_worker(instance, token):
    server = ServerProcess(
        instance, workers=2, extra_env={"POGGIO_METRICS_TOKEN": METRICS_TOKEN, "POGGIO_REDIS_URL": REDIS_URL}
    )
    try:
        assert scrape(server, None).status_code == 401
        assert scrape(server, "wrong").status_code == 401
        assert scrape(server, token).status_code == 401  # an MCP token is not a metrics token
        for _ in range(30):
            assert tools_list(server, token).status_code == 200
        counts = [tools_list_count(scrape(server).text) for _ in range(8)]
        assert counts == [30.0] * 8, counts
    finally:
        server.stop()


def test_metrics_survive_a_restart_of_the_server(instance, token):
    """Counts of a previous run (same folder) do not leak into the next one."""
    env = {"POGGIO_METRICS_TOKEN": METRICS_TOKEN, "POGGIO_REDIS_URL": REDIS_URL}
    first = ServerProcess(instance, workers=2, extra_env=env)
    try:
        for _ in range(5):
            tools_list(first, token)
    finally:
        first.stop()
    second = ServerProcess(instance, workers=2, extra_env=env)
    try:
        tools_list(second, token)
        assert tools_list_count(scrape(second).text) == 1.0
    finally:
        second.stop()


def test_workers_without_redis_warn_at_start_up(instance):
    server = ServerProcess(instance, workers=2, extra_env={"POGGIO_RATE_LIMIT": "20/minute"})
    try:
        log = server.log()
        assert "POGGIO_REDIS_URL" in log and "per worker" in log, log[-2000:]
    finally:
        server.stop()


def test_poggio_mcp_refuses_several_workers_without_redis(instance):
    env = {**os.environ, **instance.env, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("POGGIO_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "poggio", "mcp", "--workers", "3", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "POGGIO_REDIS_URL" in done.stderr and "3" in done.stderr, done.stderr
