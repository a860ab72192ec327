"""Requests/s and latency of Poggio's MCP server next to a bare-SDK reference server, in one run.

    .venv/bin/python benchmarks/mcp_throughput.py [--seconds 10] [--connections 16] [--runs 3]
        [--workers 1] [--postgres] [--accounts 2000] [--before DIR] [--only WORD,...] [--paired]

Starts the servers (uvicorn, one worker each unless --workers: Poggio, the reference with its echo
tool, and the reference also listing Poggio's tool schemas), builds demo data and a token for
Poggio, and drives each with wrk (Debian package `wrk`, a Lua POST script per call), alternating
Poggio and the reference so both see the same machine. Prints medians over --runs; a ratio is the
median of each run's ratio (this machine's speed drifts by half within a minute); with ``--paired``
each case's reference is run again just before it and the ratio taken pair by pair.
Usage recording and rate limiting stay on (the limit is raised so the load is not refused). Poggio's
calls are made with an API token and again with an OAuth access token (of a client_credentials
client), whose verification takes the same one look-up.

Both protocol generations are measured: the legacy stateless POST (``MCP-Protocol-Version:
2025-11-25``, no initialize) and the current one (2026-07-28: the ``_meta`` envelope in the body and
the ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers). ``--before DIR`` also starts
Poggio from another checkout (e.g. ``git worktree add /tmp/before main``) on the same database, so
before and after are measured in one run; ``--only`` keeps the cases whose name has one of the words.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
LEGACY, MODERN = "2025-11-25", "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "wrk", "version": "1"},
}


def request(method: str, params: dict | None, version: str) -> tuple[dict, dict]:
    """The body and headers of one POST in the protocol generation of ``version``."""
    body: dict = {"jsonrpc": "2.0", "id": 1, "method": method}
    headers = {"MCP-Protocol-Version": version}
    if version == MODERN:
        params = {**(params or {}), "_meta": ENVELOPE}
        headers["Mcp-Method"] = method
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
    if params is not None:
        body["params"] = params
    return body, headers


# An OAuth access token as the client_credentials grant issues it, made through the core (no portal).
MINT_OAUTH = """
from poggio.records.audit import Actor
from poggio.storage.db import bind
from poggio.identity.oauth import OAuthService
from poggio.settings import load_settings
from poggio.identity.workspaces import get_workspace
settings = load_settings()
with bind(settings.database_url).connection_context():
    service = OAuthService.from_settings(settings, {"accounts", "contacts", "revenue"})
    issued = service.create_confidential(get_workspace("acme"), "bench", Actor.cli(), resource=settings.mcp_public_url)
    print(service.issue_tokens(service.standing_grant(issued.client), refresh=False)["access_token"])
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def lua(body: dict, token: str, extra: dict) -> str:
    headers = {**HEADERS, **extra, "Authorization": f"Bearer {token}"}
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    return "\n".join(['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}", *lines]) + "\n"


def lua_counting(body: dict, token: str) -> str:
    """As :func:`lua`, with every ``"%d"`` string in the body replaced by a number that grows with each
    request: a write tool changes something on every call (the same value again would write nothing)."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    template = json.dumps(body).replace('"%d"', "%d")
    return (
        "\n".join(
            [
                'wrk.method = "POST"',
                *lines,
                "counter = 0",
                f"template = {json.dumps(template)}",
                "request = function()",
                "  counter = counter + 1",
                "  return wrk.format(nil, nil, nil, string.format(template, counter))",
                "end",
            ]
        )
        + "\n"
    )


def wrk(url: str, script: str, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            script + """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + """
            """summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""
        )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", fh.name, url], capture_output=True, text=True
    ).stdout
    os.unlink(fh.name)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    requests, duration_us, errors, p50, p99, _ = map(int, m.groups())
    return {"rps": requests / (duration_us / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "errors": errors}


def _reference_of(name: str) -> str | None:
    """The bare-SDK case a Poggio case is compared with: its tools/list, or echo for a tool call."""
    if name.startswith("reference") or name.endswith(("update_opportunity", "add_note")):
        return None
    era = "2026" if " 2026" in name else "legacy"
    return f"reference tools/list {era}" if " tools/list " in f"{name} " else f"reference echo {era}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with (same database)")
    parser.add_argument("--only", default="", help="comma-separated words: only the cases whose name has one")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="run each case's reference again just before it, and take ratios pair by pair",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "POGGIO_INSTANCE_PATH": str(tmp),
        "POGGIO_RATE_LIMIT": "100000000/minute",
        "POGGIO_WRITE_RATE_LIMIT": "100000000/minute",
        "POGGIO_SECRET_KEY": secrets.token_hex(16),
    }
    schema = None
    if args.postgres:
        import psycopg2

        schema = f"bench_{secrets.token_hex(4)}"
        conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test")
        conn.autocommit = True
        conn.cursor().execute(f"CREATE SCHEMA {schema}")
        env["POGGIO_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    poggio = [sys.executable, "-m", "poggio"]
    subprocess.run([*poggio, "demo", "--accounts", str(args.accounts)], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*poggio, "token", "create", "--workspace", "acme", "--name", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    writer = subprocess.run(
        [
            *poggio,
            "token",
            "create",
            "--workspace",
            "acme",
            "--name",
            "bench writer",
            "--packs",
            "accounts:write,contacts,revenue:write",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    p_port, r_port, s_port, b_port = free_port(), free_port(), free_port(), free_port()
    env["POGGIO_MCP_PUBLIC_URL"] = f"http://127.0.0.1:{p_port}/mcp"
    access = subprocess.run(
        [sys.executable, "-c", MINT_OAUTH], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    poggio_log = open(tmp / "poggio-mcp.log", "wb")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # the SDK logs each cut connection
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mcp_server.app:create_app",
                "--factory",
                "--port",
                str(p_port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=poggio_log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.reference_server:app",
                "--port",
                str(r_port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            **quiet,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.reference_server:same_tools_app",
                "--port",
                str(s_port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            **quiet,
        ),
    ]
    if args.before:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "mcp_server.app:create_app",
                    "--factory",
                    "--port",
                    str(b_port),
                    "--workers",
                    str(args.workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=args.before,
                env={
                    **env,
                    "PYTHONPATH": os.pathsep.join(  # the checkout and its packs (plugins/)
                        str(p) for p in (args.before.resolve(), args.before.resolve() / "plugins")
                    ),
                },
                **quiet,
            )
        )
    try:
        if args.before:
            wait(f"http://127.0.0.1:{b_port}/healthz", procs[3])
        wait(f"http://127.0.0.1:{p_port}/healthz", procs[0])
        wait(f"http://127.0.0.1:{r_port}/mcp", procs[1])
        wait(f"http://127.0.0.1:{s_port}/mcp", procs[2])
        call = lambda name, a: ("tools/call", {"name": name, "arguments": a})  # noqa: E731
        listing = ("tools/list", None)
        calls = [
            ("tools/list", listing),
            ("get_account", call("get_account", {"domain": "example.com"})),
            ("search_accounts", call("search_accounts", {"query": "acme", "limit": 20})),
            ("get_revenue_summary", call("get_revenue_summary", {"account_domain": "example.com"})),
        ]
        cases = []
        for version in (LEGACY, MODERN):
            era = "legacy" if version == LEGACY else "2026"
            cases += [
                (f"reference tools/list {era}", r_port, *request(*listing, version), "reference-token"),
                (f"reference echo {era}", r_port, *request(*call("echo", {"text": "hi"}), version), "reference-token"),
                (f"reference 7 tools list {era}", s_port, *request(*listing, version), "reference-token"),
            ]
            servers = [("poggio", p_port)] + ([("before", b_port)] if args.before else [])
            for label, port in servers:
                cases += [(f"{label} {what} {era}", port, *request(*req, version), token) for what, req in calls]
                cases += [
                    (f"{label} {what} {era} OAuth", port, *request(*req, version), access) for what, req in calls[:2]
                ]
        if args.only:
            words = args.only.split(",")
            cases = [c for c in cases if c[0].startswith("reference") or any(w in c[0] for w in words)]
        # writes: each call really changes the deal (a new amount: the row, two day totals, an audit
        # row, in one transaction), or adds a note (legacy generation). The
        # notes go to another account than the one get_account reads: it shows an account's newest
        # notes, and the reads are measured on the demo data as it was built
        other = next(
            a["domain"]
            for a in httpx.post(
                f"http://127.0.0.1:{p_port}/mcp",
                headers={**HEADERS, "Authorization": f"Bearer {token}"},
                json=request(*call("search_accounts", {"limit": 5}), LEGACY)[0],
            ).json()["result"]["structuredContent"]["accounts"]
            if a["domain"] != "example.com"
        )
        writes = []
        for label, port in [("poggio", p_port)] + ([("before", b_port)] if args.before else []):
            writes += [
                (
                    f"{label} update_opportunity",
                    port,
                    request(*call("update_opportunity", {"id": 1, "amount": "%d"}), LEGACY)[0],
                    writer,
                ),
                (
                    f"{label} add_note",
                    port,
                    request(*call("add_note", {"domain": other, "text": "note %d"}), LEGACY)[0],
                    writer,
                ),
            ]
        for name, port, body, tok in writes:  # a tool error would be a fast 200: make sure they write
            sample = json.loads(json.dumps(body).replace('"%d"', "7").replace("%d", "7"))
            answer = httpx.post(
                f"http://127.0.0.1:{port}/mcp", json=sample, headers={**HEADERS, "Authorization": f"Bearer {tok}"}
            ).json()
            if answer["result"].get("isError"):
                raise SystemExit(f"{name} fails: {answer['result']['content'][0]['text']}")
        results: dict[str, list[dict]] = {name: [] for name, *_ in cases + writes}
        by_name = {c[0]: c for c in cases}
        paired: dict[str, list[float]] = {}  # --paired: each run's ratio to the reference measured just before
        for _ in range(args.runs):
            for name, port, body, tok in writes:
                results[name].append(
                    wrk(f"http://127.0.0.1:{port}/mcp", lua_counting(body, tok), args.seconds, args.connections)
                )
            for name, port, body, extra, tok in cases:
                reference = _reference_of(name)
                if args.paired and reference is not None:
                    _, r_port_, r_body, r_extra, r_tok = by_name[reference]
                    before_it = wrk(
                        f"http://127.0.0.1:{r_port_}/mcp", lua(r_body, r_tok, r_extra), args.seconds, args.connections
                    )
                results[name].append(
                    wrk(f"http://127.0.0.1:{port}/mcp", lua(body, tok, extra), args.seconds, args.connections)
                )
                if args.paired and reference is not None:
                    paired.setdefault(name, []).append(results[name][-1]["rps"] / before_it["rps"])
        med = {
            name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "errors")}
            for name, runs in results.items()
        }
        backend = "PostgreSQL" if args.postgres else "SQLite"
        print(
            f"{backend}, {args.workers} worker(s), {args.connections} connections, "
            f"{args.seconds}s x {args.runs} runs (medians)"
        )
        print(f"{'case':40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, m in med.items():
            print(f"{name:40} {m['rps']:8.0f} {m['p50']:8.1f} {m['p99']:8.1f} {m['errors']:7.0f}")
        print(
            "ratios (Poggio against the bare SDK, each run's figure over the same run's reference, medians; "
            "targets: tools/list >= 1.5 of its tools/list, get_account and get_revenue_summary >= 1.0 of echo, "
            "search_accounts >= 0.8 of echo)"
        )
        for era in ("legacy", "2026"):
            for label in ("poggio", "before"):
                parts = []
                for what in ("tools/list", "get_account", "search_accounts", "get_revenue_summary"):
                    for suffix in ("", " OAuth"):
                        name = f"{label} {what} {era}{suffix}"
                        if name in med:
                            # per run: this machine's speed drifts over a run, and a run's cases are
                            # measured one after another; --paired: against the reference run just before
                            base = results[_reference_of(name)]
                            ratio = statistics.median(
                                paired[name]
                                if args.paired
                                else (r["rps"] / b["rps"] for r, b in zip(results[name], base, strict=True))
                            )
                            parts.append(f"{what}{suffix} {ratio:.2f}")
                if parts:
                    print(f"  {label:7} {era:7} " + ", ".join(parts))
        if {"poggio update_opportunity", "poggio add_note", "poggio get_account legacy"} <= med.keys():
            print(
                f"writes against get_account (legacy): update_opportunity "
                f"{med['poggio update_opportunity']['rps'] / med['poggio get_account legacy']['rps']:.2f}, add_note "
                f"{med['poggio add_note']['rps'] / med['poggio get_account legacy']['rps']:.2f}"
            )
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        poggio_log.close()
        logged = (tmp / "poggio-mcp.log").read_text(errors="replace")
        print(f"Poggio's log: {logged.count(' ERROR ')} ERROR lines, {logged.count('Traceback')} tracebacks")
        if "Traceback" in logged:  # the first one, to say what went wrong
            start = logged.index("Traceback")
            print(logged[max(0, start - 300) : start + 3000])
        if schema:
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
