"""Server time of the activity chart's data over millions of recorded requests.

    .venv/bin/python benchmarks/activity_chart.py [--rows 2000000] [--tokens 50] [--runs 5] [--postgres]

Builds a temp instance (SQLite, or a fresh schema in PostgreSQL at 127.0.0.1:5432/test) with one
workspace, N tokens and ROWS activity rows spread over the last 30 days (outcomes and latencies drawn
at random), then times :func:`poggio.records.activity_chart.chart` for: the workspace over 30 days (daily
buckets), the workspace over the last 24 hours (hourly), one token over 30 days, and the workspace
filtered by outcome. Prints median and max in ms and the query plan of one bucket's aggregate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
OUTCOMES = ["ok"] * 90 + ["tool_error"] * 6 + ["refused"] * 2 + ["rate_limited"] + ["timed_out"]
TOOLS = ["search_accounts", "get_account", "list_contacts", "update_opportunity", "revenue_report", "tools/list"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--reuse", metavar="PATH", help="a SQLite file an earlier run built (it prints its path)")
    args = parser.parse_args()

    import psycopg2
    from peewee import fn

    from poggio.identity.tokens import TokenService
    from poggio.identity.workspaces import create_workspace
    from poggio.records.activity import Filters
    from poggio.records.activity_chart import chart
    from poggio.records.audit import Actor
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import bind, database, refresh_statistics, utcnow
    from poggio.storage.models import Activity

    schema = None
    if args.postgres:
        schema = f"poggio_bench_{secrets.token_hex(4)}"
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        conn.cursor().execute(f"CREATE SCHEMA {schema}")
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    elif args.reuse:
        url = f"sqlite:///{args.reuse}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = bind(url)
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            if args.reuse:
                from poggio.storage.models import ApiToken, Workspace

                ws = Workspace.get(Workspace.slug == "bench")
                tokens = [
                    t.id for t in ApiToken.select(ApiToken.id).where(ApiToken.workspace == ws).order_by(ApiToken.id)
                ]
                now = utcnow()
                print(f"reusing {args.reuse}: {Activity.select().count():,} activity rows")
            else:
                ws = create_workspace("bench", "Bench", True, Actor.cli())
                service = TokenService(known_packs={"accounts", "contacts", "revenue"}, max_active_tokens=10_000)
                tokens = [service.create(ws, f"t{i}", Actor.cli()).token.id for i in range(args.tokens)]
                now = utcnow()
                rng = random.Random(7)
                started = time.monotonic()
                batch = []
                for i in range(args.rows):
                    at = now - dt.timedelta(seconds=rng.random() * 30 * 86400)
                    batch.append(
                        (
                            ws.id,
                            "token",
                            rng.choice(tokens),
                            at,
                            rng.choice(TOOLS),
                            rng.choice(OUTCOMES),
                            round(rng.lognormvariate(3, 0.8), 2),
                        )
                    )
                    if len(batch) == 10_000 or i == args.rows - 1:
                        with database.atomic():
                            Activity.insert_many(
                                batch,
                                fields=[
                                    Activity.workspace,
                                    Activity.kind,
                                    Activity.subject_id,
                                    Activity.at,
                                    Activity.tool,
                                    Activity.outcome,
                                    Activity.latency_ms,
                                ],
                            ).execute()
                        batch = []
                refresh_statistics()
                print(
                    f"{args.rows:,} activity rows written in {time.monotonic() - started:.0f} s "
                    f"({'PostgreSQL' if args.postgres else 'SQLite'}; {url})",
                    flush=True,
                )
            cases = {
                "workspace, 30 days (daily)": Filters(),
                "workspace, last 24 h (hourly)": Filters(since=now - dt.timedelta(hours=24)),
                "one token, 30 days (daily)": Filters(kind="token", subject_id=tokens[0]),
                "workspace, outcome=tool_error, 30 days": Filters(outcome="tool_error"),
            }
            for name, filters in cases.items():
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    data = chart(ws.id, filters, now, tools=TOOLS)
                    times.append((time.perf_counter() - t0) * 1000)
                print(
                    f"{name:42} median {statistics.median(times):8.1f} ms  max {max(times):8.1f} ms  "
                    f"({len(data['buckets'])} buckets, {data['total']:,} calls)"
                )
            day = now - dt.timedelta(days=1)
            cond = Filters().where(ws.id) & (Activity.at >= day) & (Activity.at < now)
            sql, params = (
                Activity.select().where(cond & (Activity.outcome == "ok")).count_query().sql()
                if hasattr(Activity.select(), "count_query")
                else Activity.select(fn.COUNT(Activity.id)).where(cond & (Activity.outcome == "ok")).sql()
            )
            explain = "EXPLAIN QUERY PLAN " if not args.postgres else "EXPLAIN "
            print("plan of one bucket's aggregate:")
            for row in database.execute_sql(explain + sql, params).fetchall():
                print("   ", row[-1])
    finally:
        db.close()
        if schema:
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
