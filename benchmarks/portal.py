"""Server time of Settings > MCP Server with many tokens, each with 30 days of usage, and of the
activity pages over millions of recorded requests.

    .venv/bin/python benchmarks/portal.py [--tokens 1000] [--activity 2000000] [--renders 20] [--postgres]

Builds a temp instance (SQLite, or a fresh schema in PostgreSQL at 127.0.0.1:5432/test), a workspace
with the MCP entitlement and an admin, N active tokens and 30 days of usage per token over a few
tools, signs in with Flask's test client and times the full page (its first page of 50 tokens), the
token list partial that HTMX asks for, the list's last page, and one token's activity breakdown, in the
server (no network, no browser). Prints median,
p95 and max in ms and the SQL statements per render (an N+1 would grow with N). Target: the page
renders in under 150 ms with 1,000 tokens. The activity pages (workspace-wide and one token's, filtered
by outcome, tool and dates, and a page deep in the cursor chain) must cost the same at any size: each
is one indexed read from the newest end (the SQLite query plan of each is printed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and the file's name would shadow the
# portal package it measures: the folder goes off the path before anything of Poggio is imported.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--activity", type=int, default=2_000_000, help="recorded requests to seed")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="poggio-portal-bench-")
    schema = None
    if args.postgres:
        import psycopg2

        schema = f"bench_{secrets.token_hex(4)}"
        admin_conn = psycopg2.connect(PG_URL)
        admin_conn.autocommit = True
        admin_conn.cursor().execute(f"CREATE SCHEMA {schema}")
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp}/poggio.db"
    os.environ.update(
        {
            "POGGIO_INSTANCE_PATH": tmp,
            "POGGIO_DATABASE_URL": url,
            "POGGIO_SECRET_KEY": secrets.token_hex(16),
            "POGGIO_MAX_ACTIVE_TOKENS": str(args.tokens + 1),
        }
    )

    # imported after the environment is set: the portal reads its settings at create_app()
    import poggio.identity.workspaces
    from poggio.identity.tokens import TokenService
    from poggio.identity.workspaces import create_user, create_workspace
    from poggio.records.audit import Actor
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import bind, database, utcnow, writing
    from poggio.storage.models import Activity, TokenUsage
    from portal import create_app

    poggio.identity.workspaces.BCRYPT_ROUNDS = 4  # sign-in speed is not what is measured here
    password = secrets.token_urlsafe(12)
    db = bind(url)
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            start = time.perf_counter()
            ws = create_workspace("acme", "Acme", True, Actor.cli())
            create_user("admin@acme.example", password, ws, "admin", Actor.cli())
            service = TokenService(max_active_tokens=args.tokens + 1)
            ids = [
                service.create(ws, f"integration {i:04d}", Actor.cli(), expires="never").token.id
                for i in range(args.tokens)
            ]
            rng = random.Random(7)
            today = utcnow().date()
            tools = ["search_accounts", "get_account", "search_contacts", "get_revenue_summary", "tools/list"]
            rows = [
                {
                    "token": tid,
                    "day": today - dt.timedelta(days=d),
                    "tool": tool,
                    "calls": rng.randint(1, 500),
                    "errors": rng.randint(0, 3),
                }
                for tid in ids
                for d in range(args.days)
                for tool in rng.sample(tools, 3)
            ]
            with writing():
                for i in range(0, len(rows), 500):
                    TokenUsage.insert_many(rows[i : i + 500]).execute()
            seeded = time.perf_counter() - start
            start = time.perf_counter()
            outcomes = ["ok"] * 96 + ["tool_error", "tool_error", "refused", "rate_limited"]
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            step = dt.timedelta(days=args.days) / max(1, args.activity)
            fields = [
                Activity.workspace,
                Activity.kind,
                Activity.subject_id,
                Activity.at,
                Activity.tool,
                Activity.outcome,
                Activity.latency_ms,
                Activity.client,
                Activity.ip,
            ]
            batch = []
            for i in range(args.activity):
                batch.append(
                    (
                        ws.id,
                        "token",
                        ids[i % len(ids)],
                        now - step * i,
                        tools[i % len(tools)],
                        outcomes[rng.randrange(100)],
                        4.2,
                        "claude-ai 1.0",
                        "203.0.113.7",
                    )
                )
                if len(batch) == 5000 or i == args.activity - 1:
                    with writing():
                        Activity.insert_many(batch, fields=fields).execute()
                    batch = []
            seeded_activity = time.perf_counter() - start
        print(
            f"{'PostgreSQL' if args.postgres else 'SQLite'}: {args.tokens} tokens, {len(rows):,} usage rows "
            f"({args.days} days x 3 tools per token), seeded in {seeded:.1f} s; {args.activity:,} activity "
            f"records in {seeded_activity:.1f} s"
        )

        app = create_app()
        client = app.test_client()
        page = client.get("/sign-in").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        signed_in = client.post(
            "/sign-in", data={"email": "admin@acme.example", "password": password, "csrf_token": csrf}
        )
        assert signed_in.status_code == 302, signed_in.status_code

        statements = [0]
        execute_sql = database.obj.execute_sql

        def counting(sql, params=None, *a, **kw):
            statements[0] += 1
            return execute_sql(sql, params, *a, **kw)

        database.obj.execute_sql = counting
        cases = [
            ("MCP Server page (full)", "/settings/mcp/", {}),
            ("token list partial (HTMX)", "/settings/mcp/", {"HX-Request": "true", "HX-Target": "token-list"}),
            (
                "last page of the list (HTMX)",
                f"/settings/mcp/?page={(args.tokens + 49) // 50}",
                {"HX-Request": "true", "HX-Target": "token-list"},
            ),
            (
                "one token's tools (HTMX)",
                f"/settings/mcp/tokens/{ids[len(ids) // 2]}/activity",
                {"HX-Request": "true", "HX-Target": f"tools-{ids[len(ids) // 2]}"},
            ),
        ]
        middle = ids[len(ids) // 2]
        results = {"HX-Request": "true", "HX-Target": "activity-results"}
        since = (utcnow() - dt.timedelta(days=args.days // 2)).date().isoformat()
        with db.connection_context():
            from poggio.records import activity as record

            cursor = None
            for _ in range(20):  # the 21st page of the workspace's record
                _, cursor = record.page(ws, record.Filters(), cursor)
        cases += [
            ("activity, workspace (full)", "/settings/mcp/activity", {}),
            ("activity, refused (HTMX)", "/settings/mcp/activity?outcome=refused", results),
            ("activity, one tool (HTMX)", "/settings/mcp/activity?tool=get_account", results),
            ("activity, 21st page (HTMX)", f"/settings/mcp/activity?cursor={cursor}", results),
            ("activity, one token (full)", f"/settings/mcp/tokens/{middle}/activity", {}),
            ("activity, token, refused", f"/settings/mcp/tokens/{middle}/activity?outcome=refused", results),
            ("activity, token, dates", f"/settings/mcp/tokens/{middle}/activity?until={since}", results),
        ]
        if not args.postgres:
            with db.connection_context():
                from poggio.records import activity as record

                for label, filters in (
                    ("workspace", record.Filters()),
                    ("workspace, refused", record.Filters(outcome="refused")),
                    ("token, tool", record.Filters(kind="token", subject_id=middle, tool="get_account")),
                ):
                    sql, params = record._newest_first(ws.id, filters, None, 51).sql()
                    plan = " | ".join(r[-1] for r in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
                    print(f"plan, {label}: {plan}")
        print(f"{'render':30} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'SQL':>5} {'KB':>6}")
        full_median = None
        for label, path, headers in cases:
            client.get(path, headers=headers)  # warm: templates compiled, pool filled
            times = []
            for _ in range(args.renders):
                statements[0] = 0
                t = time.perf_counter()
                response = client.get(path, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            size = len(response.get_data())
            median = statistics.median(times)
            full_median = full_median if full_median is not None else median
            print(
                f"{label:30} {median:10.1f} {percentile(times, 0.95):8.1f} {max(times):8.1f} {statements[0]:5d} "
                f"{size / 1024:6.0f}"
            )
        verdict = "met" if full_median < 150 else "MISSED"
        print(f"target: the page in under 150 ms with {args.tokens} tokens: {verdict} ({full_median:.1f} ms median)")
    finally:
        if isinstance(getattr(database, "obj", None), object) and hasattr(database.obj, "close_all"):
            database.obj.close_all()
        if schema:
            admin_conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
