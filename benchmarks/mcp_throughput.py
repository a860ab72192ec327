"""Requests/s and latency of Poggio's MCP server next to a bare-SDK reference server, in one run.

    .venv/bin/python benchmarks/mcp_throughput.py [--seconds 10] [--connections 16] [--runs 3]
        [--workers 1] [--postgres] [--accounts 2000]

Starts the servers (uvicorn, one worker each unless --workers: Poggio, the reference with its echo
tool, and the reference also listing Poggio's tool schemas), builds demo data and a token for
Poggio, and drives each with wrk (Debian package `wrk`, a Lua POST script per call), alternating
Poggio and the reference so both see the same machine. Prints medians over --runs.
Usage recording and rate limiting stay on (the limit is raised so the load is not refused). Poggio's
calls are made with an API token and again with an OAuth access token (of a client_credentials
client), whose verification takes the same one look-up.
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
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}


# An OAuth access token as the client_credentials grant issues it, made through the core (no portal).
MINT_OAUTH = """
from poggio.audit import Actor
from poggio.db import bind
from poggio.oauth import OAuthService
from poggio.settings import load_settings
from poggio.workspaces import get_workspace
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


def lua(body: dict, token: str) -> str:
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    return "\n".join(['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}", *lines]) + "\n"


def lua_counting(body: dict, token: str) -> str:
    """As :func:`lua`, with every ``"%d"`` string in the body replaced by a number that grows with each
    request: a write tool changes something on every call (the same value again would write nothing)."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    template = json.dumps(body).replace('"%d"', "%d")
    return "\n".join(['wrk.method = "POST"', *lines, "counter = 0",
                      f"template = {json.dumps(template)}",
                      "request = function()",
                      "  counter = counter + 1",
                      "  return wrk.format(nil, nil, nil, string.format(template, counter))",
                      "end"]) + "\n"


def wrk(url: str, script: str, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script + """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
""")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", fh.name, url],
                         capture_output=True, text=True).stdout
    os.unlink(fh.name)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    requests, duration_us, errors, p50, p99, _ = map(int, m.groups())
    return {"rps": requests / (duration_us / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, "POGGIO_INSTANCE_PATH": str(tmp), "POGGIO_RATE_LIMIT": "100000000/minute",
           "POGGIO_WRITE_RATE_LIMIT": "100000000/minute",
           "POGGIO_SECRET_KEY": secrets.token_hex(16)}
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
    token = subprocess.run([*poggio, "token", "create", "--workspace", "acme", "--name", "bench"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    writer = subprocess.run([*poggio, "token", "create", "--workspace", "acme", "--name", "bench writer",
                             "--packs", "accounts:write,contacts,revenue:write"], env=env,
                            check=True, capture_output=True, text=True).stdout.strip()
    p_port, r_port, s_port = free_port(), free_port(), free_port()
    env["POGGIO_MCP_PUBLIC_URL"] = f"http://127.0.0.1:{p_port}/mcp"
    access = subprocess.run([sys.executable, "-c", MINT_OAUTH], env=env, check=True, capture_output=True,
                            text=True).stdout.strip()
    poggio_log = open(tmp / "poggio-mcp.log", "wb")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # the SDK logs each cut connection
    procs = [
        subprocess.Popen([sys.executable, "-m", "uvicorn", "mcp_server.app:create_app", "--factory", "--port",
                          str(p_port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
                         cwd=ROOT, env=env, stdout=poggio_log, stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "benchmarks.reference_server:app", "--port", str(r_port),
                          "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env,
                         **quiet),
        subprocess.Popen([sys.executable, "-m", "uvicorn", "benchmarks.reference_server:same_tools_app", "--port",
                          str(s_port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
                         cwd=ROOT, env=env, **quiet),
    ]
    try:
        wait(f"http://127.0.0.1:{p_port}/healthz", procs[0])
        wait(f"http://127.0.0.1:{r_port}/mcp", procs[1])
        wait(f"http://127.0.0.1:{s_port}/mcp", procs[2])
        call = lambda name, a: {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": a}}  # noqa: E731
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        cases = [
            ("reference tools/list", r_port, listing, "reference-token"),
            ("reference echo", r_port, call("echo", {"text": "hi"}), "reference-token"),
            ("reference tools/list 7 tools", s_port, listing, "reference-token"),
            ("poggio tools/list", p_port, listing, token),
            ("poggio get_account", p_port, call("get_account", {"domain": "example.com"}), token),
            ("poggio search_accounts", p_port, call("search_accounts", {"query": "acme", "limit": 20}), token),
            ("poggio get_revenue_summary", p_port, call("get_revenue_summary", {"account_domain": "example.com"}), token),
            ("poggio tools/list, OAuth", p_port, listing, access),
            ("poggio get_account, OAuth", p_port, call("get_account", {"domain": "example.com"}), access),
        ]
        # writes: each call really changes the deal (a new amount: the row, two day totals, an audit
        # row, in one transaction), or adds a note
        writes = [
            ("poggio update_opportunity", p_port, call("update_opportunity", {"id": 1, "amount": "%d"}), writer),
            ("poggio add_note", p_port, call("add_note", {"domain": "example.com", "text": "note %d"}), writer),
        ]
        for name, port, body, tok in writes:  # a tool error would be a fast 200: make sure they write
            sample = json.loads(json.dumps(body).replace('"%d"', "7").replace("%d", "7"))
            answer = httpx.post(f"http://127.0.0.1:{port}/mcp", json=sample,
                                headers={**HEADERS, "Authorization": f"Bearer {tok}"}).json()
            if answer["result"].get("isError"):
                raise SystemExit(f"{name} fails: {answer['result']['content'][0]['text']}")
        results: dict[str, list[dict]] = {name: [] for name, *_ in cases + writes}
        for _ in range(args.runs):
            for name, port, body, tok in cases:
                results[name].append(wrk(f"http://127.0.0.1:{port}/mcp", lua(body, tok), args.seconds, args.connections))
            for name, port, body, tok in writes:
                results[name].append(wrk(f"http://127.0.0.1:{port}/mcp", lua_counting(body, tok), args.seconds,
                                         args.connections))
        med = {name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "errors")}
               for name, runs in results.items()}
        backend = "PostgreSQL" if args.postgres else "SQLite"
        print(f"{backend}, {args.workers} worker(s), {args.connections} connections, {args.seconds}s x {args.runs} runs (medians)")
        print(f"{'case':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, m in med.items():
            print(f"{name:28} {m['rps']:8.0f} {m['p50']:8.1f} {m['p99']:8.1f} {m['errors']:7.0f}")
        ref_list, ref_echo = med["reference tools/list"]["rps"], med["reference echo"]["rps"]
        same = med["reference tools/list 7 tools"]["rps"]
        print(f"writes against get_account: update_opportunity "
              f"{med['poggio update_opportunity']['rps'] / med['poggio get_account']['rps']:.2f}, add_note "
              f"{med['poggio add_note']['rps'] / med['poggio get_account']['rps']:.2f}")
        print(f"OAuth against API token: tools/list {med['poggio tools/list, OAuth']['rps'] / med['poggio tools/list']['rps']:.2f}, "
              f"get_account {med['poggio get_account, OAuth']['rps'] / med['poggio get_account']['rps']:.2f}")
        print(f"tools/list ratio {med['poggio tools/list']['rps'] / ref_list:.2f} (target >= 0.9; "
              f"{med['poggio tools/list']['rps'] / same:.2f} against the reference listing Poggio's tools too); "
              f"get_account vs echo {med['poggio get_account']['rps'] / ref_echo:.2f} (target >= 0.7)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        poggio_log.close()
        logged = (tmp / "poggio-mcp.log").read_text(errors="replace")
        print(f"Poggio's log: {logged.count(' ERROR ')} ERROR lines, {logged.count('Traceback')} tracebacks")
        if schema:
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
