"""An MCP client over real HTTP for tests: the official SDK's Streamable HTTP client with a bearer header."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def mcp_client(
    url: str,
    token: str | None,
    mode: str = "auto",
    client_name: str = "poggio-tests",
    statuses: list[int] | None = None,
    headers: dict[str, str] | None = None,
):
    """The SDK client with a bearer header. The SDK reports an HTTP 401/403 only as a generic
    JSON-RPC error, so the HTTP statuses it met are collected in ``statuses`` for tests to read."""
    from mcp_types import Implementation

    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token is not None else {})}

    async def keep_status(response):
        if statuses is not None:
            statuses.append(response.status_code)

    async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [keep_status]}) as http:
        async with Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            client_info=Implementation(name=client_name, version="1.2.3"),
        ) as client:
            yield client


def http_status(exc: BaseException) -> int | None:
    """The HTTP status inside whatever the client raised (it may be an exception group)."""
    seen: list[BaseException] = [exc]
    while seen:
        e = seen.pop()
        response = getattr(e, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return response.status_code
        seen.extend(getattr(e, "exceptions", ()))
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                seen.append(nxt)
    return None


class Mcp:
    """Synchronous façade for tests: one connection per call, like a stateless client."""

    def __init__(self, url: str, token: str | None, mode: str = "auto", headers: dict[str, str] | None = None):
        self.url, self.token, self.mode, self.headers = url, token, mode, headers

    def _run(self, fn):
        self.statuses: list[int] = []

        async def main():
            async with mcp_client(
                self.url, self.token, self.mode, statuses=self.statuses, headers=self.headers
            ) as client:
                return await fn(client)

        # A thread of its own, so it also works where the caller's thread runs an event loop (Playwright).
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(anyio.run, main).result()

    def tool_names(self) -> list[str]:
        async def go(c):
            return [t.name for t in (await c.list_tools()).tools]

        return self._run(go)

    def tools(self):
        async def go(c):
            return (await c.list_tools()).tools

        return self._run(go)

    def call(self, name: str, arguments: dict[str, Any] | None = None):
        async def go(c):
            return await c.call_tool(name, arguments or {})

        return self._run(go)

    def calls(self, calls: list[tuple[str, dict[str, Any]]]):
        async def go(c):
            return [await c.call_tool(n, a) for n, a in calls]

        return self._run(go)

    def status_of_failure(self) -> int | None:
        """Connect and list tools; returns the HTTP status the server refused with (or None if it worked)."""
        try:
            self.tool_names()
        except BaseException as exc:  # noqa: BLE001 - the client wraps HTTP errors in groups
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed = [s for s in self.statuses if s >= 400]
            return failed[0] if failed else http_status(exc)
        return None


def install_pack(site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Install a tool pack distribution into the folder ``site`` as pip would lay it out: its modules
    and a ``*.dist-info`` with ``entry_points.txt`` in the ``poggio`` group. Put ``site`` on
    ``sys.path``/``PYTHONPATH`` and ``importlib.metadata`` finds it like any installed package."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[poggio]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    )
    (info / "RECORD").write_text("")
    return site


def revenue_day_totals(workspace_id: int) -> tuple[dict, dict]:
    """``(kept, computed)``: the revenue pack's per-day totals of a workspace as kept in
    ``revenue_day``, and the same added up from its opportunities, as
    ``{(currency, stage, close date): (count, amount)}``; they must be equal."""
    from decimal import Decimal

    from peewee import fn

    from poggio_revenue import Opportunity
    from poggio_revenue.models import RevenueDay

    cents = Decimal("0.01")
    computed = {
        (c, s, d): (n, Decimal(str(a)).quantize(cents))
        for c, s, d, n, a in Opportunity.select(
            Opportunity.currency,
            Opportunity.stage,
            Opportunity.close_date,
            fn.COUNT(Opportunity.id),
            fn.SUM(Opportunity.amount),
        )
        .where(Opportunity.workspace == workspace_id)
        .group_by(Opportunity.currency, Opportunity.stage, Opportunity.close_date)
        .tuples()
    }
    kept = {
        (r.currency, r.stage, r.close_date): (r.count, Decimal(str(r.amount)).quantize(cents))
        for r in RevenueDay.select().where(RevenueDay.workspace == workspace_id)
    }
    return kept, computed


def clear_of_the_minute_turn(needed: float = 15.0) -> None:
    """Per-minute limits are sliding window counters: the previous minute's requests count for the
    part of it still inside the window, rounded down, so a test that counts requests across the turn
    of a minute may see one more pass than the limit. Wait, if need be, until the current minute has
    ``needed`` seconds left: the counted requests then all fall in one minute after an empty one."""
    import time

    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.05)
