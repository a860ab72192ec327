"""Where an MCP request's time goes, in process: no network, no load generator.

    .venv/bin/python benchmarks/mcp_profile.py [--requests 2100] [--batches 7] [--accounts 2000] [--stages]
        [--cprofile CASE [--sort cumulative]] [--writes]

Builds a demo database and a token in a temporary instance, then sends each case's request
straight to the ASGI applications (Poggio's, and the bare-SDK reference of ``reference_server.py``)
and prints the microseconds per request: the best of seven batches (``--batches``), so another process on the
machine costs less than it would in an average. ``--stages`` also times the steps of a request
(authentication, the lean path's checks, the SDK's Tool.run, the tool itself, writing the answer)
by wrapping them with a clock, which adds about a microsecond to each; ``--cprofile CASE`` prints
cProfile's view of one case (slower by about half, and it overstates the cost of small calls).
``--writes`` times the write tools instead (legacy generation, each request a new change: a new
amount, a new account, a new idempotency key), with a token that may write.
``mcp_throughput.py`` measures the same requests over HTTP with wrk; this one says why.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import functools
import json
import os
import pstats
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "profile", "version": "1"},
}


def request(method: str, params: dict | None, modern: bool, token: str) -> tuple[list, bytes]:
    body: dict = {"jsonrpc": "2.0", "id": 1, "method": method}
    headers = [
        (b"host", b"127.0.0.1:8001"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"user-agent", b"profile"),
    ]
    if modern:
        params = {**(params or {}), "_meta": ENVELOPE}
        headers += [(b"mcp-protocol-version", MODERN.encode()), (b"mcp-method", method.encode())]
        if method == "tools/call":
            headers.append((b"mcp-name", params["name"].encode()))
    else:
        headers.append((b"mcp-protocol-version", b"2025-11-25"))
    if params is not None:
        body["params"] = params
    raw = json.dumps(body).encode()
    return headers + [(b"content-length", str(len(raw)).encode())], raw


class Changing:
    """A request whose arguments change at every sending: ``%d`` in them becomes a new number."""

    def __init__(self, method: str, params: dict, token: str):
        self.template = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        self.headers = request(method, params, False, token)[0][:-1]  # all but the content-length
        self.sent = 0

    def next(self) -> tuple[list, bytes]:
        self.sent += 1
        raw = self.template.replace("%d", str(self.sent)).encode()
        return self.headers + [(b"content-length", str(len(raw)).encode())], raw


async def send(app, headers: list, body: bytes | Changing) -> tuple[int, bytes]:
    if isinstance(body, Changing):
        headers, body = body.next()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8001),
    }
    given = False

    async def receive():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    out = []

    async def respond(message):
        out.append(message)

    await app(scope, receive, respond)
    return out[0]["status"], b"".join(m.get("body", b"") for m in out[1:])


class Stages:
    """Wall time spent in named functions, per request."""

    def __init__(self):
        self.spent: collections.Counter[str] = collections.Counter()
        self.order: list[str] = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent = self.spent
        self.order.append(label)
        if asyncio.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - started
        else:

            @functools.wraps(original)
            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - started

        setattr(owner, name, timed)


def install_stages() -> Stages:
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata

    import mcp_server.auth as auth
    import mcp_server.binding as binding
    import mcp_server.front as front
    import mcp_server.lean as lean
    from poggio.runtime.packs import ToolSpec

    stages = Stages()
    for owner, name, label in [
        (front.Front, "__call__", "the whole request (front door)"),
        (auth.TokenAuthBackend, "authenticate", "  authentication (cached verdict, rate limit)"),
        (lean.LeanPath, "answer", "  lean path"),
        (lean.surfaces, "validate_client_request", "    the SDK's request validation"),
        (lean, "classify_inbound_request", "    the SDK's 2026-07-28 envelope check"),
        (lean.LeanPath, "_call", "    tools/call"),
        (binding.ScopeMiddleware, "refusal", "      scope and argument check"),
        (Tool, "run", "      the SDK's Tool.run"),
        (FuncMetadata, "validate_arguments", "        its argument validation"),
        (FuncMetadata, "convert_result", "        its output validation"),
        (ToolSpec, "run", "        the tool itself"),
        (binding.ScopeMiddleware, "count", "      usage, activity record, metrics"),
        (lean, "_modern_bytes", "    writing the answer (2026-07-28)"),
        (lean, "_legacy_bytes", "    writing the answer (legacy)"),
    ]:
        stages.wrap(owner, name, label)
    return stages


async def run(args, token: str) -> None:
    sys.path[:0] = [str(ROOT / "benchmarks")]
    stages = install_stages() if args.stages else None
    import reference_server

    from mcp_server.app import create_app

    app = create_app()
    reference = reference_server.app
    cases = []
    for modern in (False, True):
        era = "2026" if modern else "legacy"
        cases += [
            (
                f"reference echo {era}",
                reference,
                *request("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, modern, "reference-token"),
            ),
            (f"reference tools/list {era}", reference, *request("tools/list", None, modern, "reference-token")),
            (f"tools/list {era}", app, *request("tools/list", None, modern, token)),
            (
                f"get_account {era}",
                app,
                *request("tools/call", {"name": "get_account", "arguments": {"domain": "example.com"}}, modern, token),
            ),
            (
                f"search_accounts {era}",
                app,
                *request(
                    "tools/call",
                    {"name": "search_accounts", "arguments": {"query": "acme", "limit": 20}},
                    modern,
                    token,
                ),
            ),
            (
                f"get_revenue_summary {era}",
                app,
                *request(
                    "tools/call",
                    {"name": "get_revenue_summary", "arguments": {"account_domain": "example.com"}},
                    modern,
                    token,
                ),
            ),
        ]
    if args.writes:
        writes = [
            ("update_opportunity", "update_opportunity", {"id": 1, "amount": "%d"}),
            ("update_opportunity keyed", "update_opportunity", {"id": 1, "amount": "%d", "idempotency_key": "key-%d"}),
            ("add_note", "add_note", {"domain": "example.com", "text": "note %d"}),
            ("update_account", "update_account", {"domain": "example.com", "employees": "%d"}),
            ("update_account name", "update_account", {"domain": "example.com", "name": "Example Corp %d"}),
            ("create_account", "create_account", {"domain": "new-%d.example", "name": "New %d"}),
            (
                "create_opportunity",
                "create_opportunity",
                {
                    "account_domain": "example.com",
                    "name": "Deal %d",
                    "stage": "prospecting",
                    "amount": "%d",
                    "currency": "USD",
                    "close_date": "2027-01-15",
                },
            ),
        ]
        cases = [cases[0]] + [
            (f"{case} legacy", app, [], Changing("tools/call", {"name": tool, "arguments": arguments}, token))
            for case, tool, arguments in writes
        ]
    inner = reference.__closure__[0].cell_contents  # reference_server._guarded(app): the app it guards
    async with getattr(app, "app", app).router.lifespan_context(app), inner.router.lifespan_context(inner):
        if args.interleaved:
            return await interleaved(cases, args)
        print(f"{'case':28} {'best':>8} {'mean':>8}  us per request (of {args.batches} batches)")
        for name, target, headers, body in cases:
            status, answer = await send(target, headers, body)
            if status != 200 or b'"isError":true' in answer:
                raise SystemExit(f"{name}: {status} {answer[:300]!r}")
            for _ in range(200):
                await send(target, headers, body)
            if stages is not None:
                stages.spent.clear()
            batch = max(1, args.requests // args.batches)
            best = []
            for _ in range(args.batches):
                started = time.perf_counter()
                for _ in range(batch):
                    await send(target, headers, body)
                best.append((time.perf_counter() - started) / batch * 1e6)
            print(f"{name:28} {min(best):8.1f} {sum(best) / len(best):8.1f}")
            if stages is not None and target is app:  # means, like the mean above
                for label in stages.order:
                    if stages.spent[label]:
                        print(f"    {label:50} {stages.spent[label] / (batch * args.batches) * 1e6:8.1f}")
            if args.cprofile and args.cprofile == name:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(batch):
                    await send(target, headers, body)
                profile.disable()
                pstats.Stats(profile).sort_stats(args.sort).print_stats(30 if args.sort == "tottime" else 60)


async def interleaved(cases, args) -> None:
    """Every case in turn, one small batch each, round after round: each round's times divided by
    the same round's bare-SDK echo of the same generation, so a slow spell of the machine (another
    tenant, a clock step) weighs on both sides of a ratio alike. Prints the median ratio per case."""
    for _, target, headers, body in cases:
        for _ in range(100):
            await send(target, headers, body)
    batch = max(1, args.requests // args.batches)
    per_round: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.batches):
        for name, target, headers, body in cases:
            started = time.perf_counter()
            for _ in range(batch):
                await send(target, headers, body)
            per_round[name].append((time.perf_counter() - started) / batch * 1e6)
    print(f"{'case':28} {'median us':>10} {'echo / case':>12}  (median of {args.batches} rounds of {batch})")
    for name, _, _, _ in cases:
        era = name.rsplit(" ", 1)[1]
        echo = per_round[f"reference echo {era}"]
        ratios = sorted(e / t for e, t in zip(echo, per_round[name], strict=True))
        print(f"{name:28} {statistics.median(per_round[name]):10.1f} {statistics.median(ratios):12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2100)
    parser.add_argument(
        "--batches", type=int, default=7, help="more, smaller batches: a steadier best on a busy machine"
    )
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="ratios to the bare SDK's echo, measured round by round (steady on a busy machine)",
    )
    parser.add_argument("--cprofile", default="", help="a case name, e.g. 'get_account 2026'")
    parser.add_argument("--writes", action="store_true", help="time the write tools (a token that may write)")
    parser.add_argument(
        "--sort",
        default="tottime",
        choices=["tottime", "cumulative"],
        help="--cprofile's order: time in each function, or with what it calls",
    )
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp())
    os.environ.update(
        {
            "POGGIO_INSTANCE_PATH": str(instance),
            "POGGIO_RATE_LIMIT": "100000000/minute",
            "POGGIO_WRITE_RATE_LIMIT": "100000000/minute",
            "POGGIO_SECRET_KEY": secrets.token_hex(16),
            "POGGIO_MCP_PUBLIC_URL": "http://127.0.0.1:8001/mcp",
        }
    )
    poggio = [sys.executable, "-m", "poggio"]
    subprocess.run([*poggio, "demo", "--accounts", str(args.accounts)], check=True, capture_output=True)
    packs = ["--packs", "accounts:write,contacts,revenue:write"] if args.writes else []
    token = subprocess.run(
        [*poggio, "token", "create", "--workspace", "acme", "--name", "profile", *packs],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    asyncio.run(run(args, token))


if __name__ == "__main__":
    main()
