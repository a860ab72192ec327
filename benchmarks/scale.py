"""How the tools' cost grows with the workspace: 10k, 100k and 1M accounts.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--calls 200] [--keep DIR] [--postgres]

For each size, builds the demo workspace (`poggio demo --accounts N`: contacts and opportunities in
proportion) in a fresh SQLite instance (or PostgreSQL schema) and times the build; then calls the
tools in process, as the MCP server's worker threads do (the HTTP layer is `mcp_throughput.py`'s
subject), with arguments drawn from the data itself, and prints p50/p95/max per kind of query.
With `--keep DIR` the SQLite instances live in DIR/<size> and are reused when already built.
Target: p95 under 50 ms at 1M accounts on SQLite; roughly flat growth for indexed look-ups.

    .venv/bin/python benchmarks/scale.py --bulk 50000 [--demo 1000000] [--code DIR] [--before DIR --runs 3] [--postgres]

times the bulk writes instead: `poggio import` of generated CSV files (N accounts, then 3N contacts
and 2N opportunities of them) into a fresh workspace, and `poggio demo --accounts` of the --demo
size, in rows per second; ``--code DIR`` runs another checkout's CLI. ``--before DIR`` times that
checkout and this one (or --code's) alternately, ``--runs`` times each, and prints the medians side by
side: before/after from one run on a machine whose load varies.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def build(size: int, folder: Path, url: str, key: str) -> float | None:
    """Build the demo with `poggio demo`; seconds taken, or None when reused."""
    marker = folder / f"built-{size}"
    env = {**os.environ, "POGGIO_INSTANCE_PATH": str(folder), "POGGIO_DATABASE_URL": url, "POGGIO_SECRET_KEY": key}
    if marker.exists():  # reused: brought up to the current schema (new indexes) first
        subprocess.run(
            [sys.executable, "-m", "poggio", "db", "upgrade"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return None
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "poggio", "demo", "--accounts", str(size)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = time.perf_counter() - start
    marker.write_text(f"{took:.1f}\n")
    return took


def cases(rng: random.Random, workspace_id: int) -> list[tuple[str, str, list[dict]]]:
    """(label, tool, argument sets) drawn from the data."""
    from peewee import fn

    from poggio.runtime.search import SearchTerm
    from poggio_accounts.models import Account
    from poggio_contacts.models import Contact

    def sample(query, n=50):
        return [row for (row,) in query.order_by(fn.RANDOM()).limit(n).tuples()]

    domains = sample(Account.select(Account.domain).where(Account.workspace == workspace_id))
    industries = [
        i
        for (i,) in Account.select(Account.industry)
        .where(Account.workspace == workspace_id)
        .distinct()
        .order_by(Account.industry)
        .tuples()
    ]
    terms = (
        SearchTerm.select(SearchTerm.term, fn.COUNT(SearchTerm.ref_id).alias("n"))
        .where((SearchTerm.workspace == workspace_id) & (SearchTerm.kind == "account"))
        .group_by(SearchTerm.term)
    )
    common = [t for t, _ in terms.order_by(fn.COUNT(SearchTerm.ref_id).desc()).limit(10).tuples()]
    rare = [t for t, _ in terms.order_by(fn.COUNT(SearchTerm.ref_id)).limit(200).tuples() if len(t) > 3][:20]
    people = list(
        Contact.select(Contact.first_name, Contact.last_name, Contact.email)
        .where(Contact.workspace == workspace_id)
        .order_by(fn.RANDOM())
        .limit(50)
        .tuples()
    )
    pick = rng.choice
    return [
        ("get_account (random domain)", "get_account", [{"domain": d} for d in domains]),
        ("search_accounts rare word", "search_accounts", [{"query": w} for w in rare]),
        ("search_accounts common word", "search_accounts", [{"query": w} for w in common]),
        ("search_accounts industry", "search_accounts", [{"industry": i} for i in industries]),
        (
            "search_accounts word+country",
            "search_accounts",
            [{"query": pick(common), "country": "DE"} for _ in range(20)],
        ),
        ("search_contacts first name", "search_contacts", [{"query": f} for f, _, _ in people]),
        ("search_contacts last name", "search_contacts", [{"query": last} for _, last, _ in people]),
        ("search_contacts two words", "search_contacts", [{"query": f"{f} {last}"} for f, last, _ in people]),
        ("search_contacts at an account", "search_contacts", [{"account_domain": d} for d in domains]),
        (
            "search_contacts word at an account",
            "search_contacts",
            [{"query": f, "account_domain": d} for (f, _, _), d in zip(people, domains, strict=False)],
        ),
        # the walk's worst case: every word common, the three together rare (~1 in 900 contacts)
        (
            "search_contacts 3 common words",
            "search_contacts",
            [{"query": f"{f} {last} {pick(common)}"} for f, last, _ in people],
        ),
        ("get_contact (random e-mail)", "get_contact", [{"email": e} for _, _, e in people]),
        ("get_revenue_summary (account)", "get_revenue_summary", [{"account_domain": d} for d in domains]),
        ("get_revenue_summary (workspace)", "get_revenue_summary", [{}]),
        ("list_opportunities (account)", "list_opportunities", [{"account_domain": d} for d in domains]),
    ]


def measure(size: int, url: str, key: str, calls: int) -> dict[str, tuple[float, float, float]]:
    from poggio.runtime.packs import CursorCodec
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.results import ToolError
    from poggio.storage.db import bind, database
    from poggio.storage.models import Workspace

    db = bind(url)
    registry = PackRegistry.load()
    out: dict[str, tuple[float, float, float]] = {}
    with db.connection_context():
        workspace_id = Workspace.get(Workspace.slug == "acme").id
        rng = random.Random(size)
        for label, tool, arguments in cases(rng, workspace_id):
            spec = registry.tool(tool)
            ctx = registry.tool_context(CursorCodec(key.encode()), workspace_id, None, None, tool)
            times = []
            for i in range(calls + 10):
                args = arguments[i % len(arguments)]
                start = time.perf_counter()
                try:
                    spec.fn(ctx, **args)
                except ToolError:
                    pass  # e.g. a sampled value no longer unique: the refusal is timed like an answer
                if i >= 10:  # the first calls warm the caches
                    times.append((time.perf_counter() - start) * 1000)
            times.sort()
            out[label] = (statistics.median(times), times[int(0.95 * (len(times) - 1))], times[-1])
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()
    return out


def _csv(path: Path, header: str, lines) -> Path:
    with path.open("w") as fh:
        fh.write(header + "\n")
        fh.writelines(line + "\n" for line in lines)
    return path


def bulk(accounts: int, demo_size: int, folder: Path, url: str, key: str, code: Path | None) -> dict[str, float]:
    """Seconds of each bulk write and its rate: the imports into a fresh workspace, then the demo."""
    env = {**os.environ, "POGGIO_INSTANCE_PATH": str(folder), "POGGIO_DATABASE_URL": url, "POGGIO_SECRET_KEY": key}
    code = code or Path(__file__).resolve().parent.parent  # this checkout, not whichever the venv installed
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code.resolve()), str(code.resolve() / "plugins")])  # and its packs
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "poggio", *a],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=code,
    )
    run("db", "upgrade")
    run("workspace", "create", "bulk", "--name", "Bulk")
    rng = random.Random(1)
    domains = [f"company{i}-{rng.randrange(10**6)}.example" for i in range(accounts)]
    files = {
        "accounts": _csv(
            folder / "accounts.csv",
            "domain,name,industry,employees,country,description",
            (
                f"{d},Company {i} Holdings,Software,{rng.randrange(1, 5000)},DE,Maker of things number {i}"
                for i, d in enumerate(domains)
            ),
        ),
        "contacts": _csv(
            folder / "contacts.csv",
            "email,first_name,last_name,title,account_domain",
            (f"p{n}.{i}@{d},Person{n},Surname{i},Buyer,{d}" for i, d in enumerate(domains) for n in range(3)),
        ),
        "opportunities": _csv(
            folder / "opportunities.csv",
            "account_domain,name,stage,amount,currency,close_date",
            (
                f"{d},Deal {n},won,{rng.randrange(1000, 90000)}.50,EUR,2026-0{1 + n}-1{n}"
                for d in domains
                for n in range(2)
            ),
        ),
    }
    out: dict[str, float] = {}

    def timed(key: str, *args: str) -> None:
        """Wall time of the command, and its CPU time (user and system: less affected by the other
        processes on a loaded machine than wall time; a PostgreSQL server's own work is not in it)."""
        cpu = _children_cpu()
        start = time.perf_counter()
        run(*args)
        out[key] = time.perf_counter() - start
        out[f"{key} cpu"] = _children_cpu() - cpu

    for kind, path in files.items():
        rows = sum(1 for _ in path.open()) - 1
        timed(f"import {kind}", "import", kind, str(path), "--workspace", "bulk")
        out[f"import {kind} rows/s"] = rows / out[f"import {kind}"]
        print(
            f"import {rows:,} {kind}: {out[f'import {kind}']:.1f} s (CPU {out[f'import {kind} cpu']:.1f} s), "
            f"{out[f'import {kind} rows/s']:,.0f} rows/s",
            flush=True,
        )
    if demo_size:
        timed("demo", "demo", "--accounts", str(demo_size))
        out["demo rows/s"] = demo_size / out["demo"]  # accounts (and their contacts, deals, terms) per second
        print(f"demo --accounts {demo_size:,}: {out['demo']:.1f} s (CPU {out['demo cpu']:.1f} s)", flush=True)
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bulk_once(args, code: Path | None) -> dict[str, float]:
    """One timing of the bulk writes in a fresh SQLite file or PostgreSQL schema."""
    folder = Path(tempfile.mkdtemp(prefix="poggio-bulk-"))
    schema = None
    if args.postgres:
        import psycopg2

        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        schema = f"bulk_{secrets.token_hex(3)}"
        conn.cursor().execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}" if schema else f"sqlite:///{folder / 'poggio.db'}"
    try:
        return bulk(args.bulk, args.demo, folder, url, "bulk-benchmark-" + "k" * 16, code)
    finally:
        if schema:
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the SQLite instances in this folder")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--bulk", type=int, default=0, help="time imports of this many accounts (and the demo)")
    parser.add_argument("--demo", type=int, default=0, help="with --bulk: also time the demo of this size")
    parser.add_argument("--code", type=Path, help="with --bulk: the checkout whose CLI runs")
    parser.add_argument("--before", type=Path, help="with --bulk: also time this checkout, alternately")
    parser.add_argument("--runs", type=int, default=1, help="with --bulk: how many times each")
    args = parser.parse_args()
    if args.bulk:
        checkouts = {"before": args.before, "after": args.code} if args.before else {"": args.code}
        timings: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
        for run in range(args.runs):
            for label, code in checkouts.items():
                if label:
                    print(
                        f"-- run {run + 1}, {label} ({code or 'this checkout'}), {os.getloadavg()[0]:.1f} load",
                        flush=True,
                    )
                timings[label].append(bulk_once(args, code))
        if args.before or args.runs > 1:
            print(f"\nmedians of {args.runs} run(s): wall seconds (rows/s), CPU seconds of the command")
            for key in (k for k in timings[next(iter(timings))][0] if not k.endswith(("rows/s", "cpu"))):
                cells = []
                for label in checkouts:
                    took = statistics.median(t[key] for t in timings[label])
                    rate = [t[f"{key} rows/s"] for t in timings[label] if f"{key} rows/s" in t]
                    cpu = statistics.median(t[f"{key} cpu"] for t in timings[label])
                    cells.append(
                        f"{label} {took:.1f} s"
                        + (f" ({statistics.median(rate):,.0f}/s)" if rate else "")
                        + f", CPU {cpu:.1f} s"
                    )
                print(f"{key:24} " + "   ".join(cells))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    root = args.keep or Path(tempfile.mkdtemp(prefix="poggio-scale-"))
    key = "scale-benchmark-" + "k" * 16  # cursors only: nothing here is secret
    results, builds, schemas = {}, {}, []
    conn = None
    if args.postgres:
        import psycopg2

        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
    try:
        for size in sizes:
            folder = root / str(size)
            folder.mkdir(parents=True, exist_ok=True)
            if args.postgres:
                schema = f"scale_{size}_{secrets.token_hex(3)}"
                conn.cursor().execute(f"CREATE SCHEMA {schema}")
                schemas.append(schema)
                url = f"{PG_URL}?options=-csearch_path%3D{schema}"
            else:
                url = f"sqlite:///{folder / 'poggio.db'}"
            took = build(size, folder, url, key)
            if args.postgres:  # statistics as autovacuum would have them a little after a bulk load
                for table in ("account", "contact", "opportunity", "search_term"):
                    conn.cursor().execute(f"ANALYZE {schema}.{table}")
            size_mb = (folder / "poggio.db").stat().st_size / 1e6 if not args.postgres else None
            builds[size] = (took, size_mb)
            print(
                f"{size:>9,} accounts: built in {'(reused)' if took is None else f'{took:.0f} s'}"
                + (f", database {size_mb:,.0f} MB" if size_mb else ""),
                flush=True,
            )
            results[size] = measure(size, url, key, args.calls)
    finally:
        if conn is not None:
            for schema in schemas:
                conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{backend}, {args.calls} calls per query kind, ms as p50 / p95 (max)")
    head = f"{'query':34}" + "".join(f"{f'{s:,} accounts':>24}" for s in sizes) + f"{'p95 growth':>12}"
    print(head)
    largest = sizes[-1]
    missed = []
    for label in results[sizes[0]]:
        cells = "".join(f"{f'{r[0]:.1f} / {r[1]:.1f} ({r[2]:.0f})':>24}" for r in (results[s][label] for s in sizes))
        growth = results[largest][label][1] / max(results[sizes[0]][label][1], 1e-6)
        print(f"{label:34}{cells}{growth:>11.1f}x")
        if results[largest][label][1] >= 50:
            missed.append(label)
    print(
        f"target: p95 < 50 ms at {largest:,} accounts: "
        + ("met for every query" if not missed else f"MISSED for {', '.join(missed)}")
    )


if __name__ == "__main__":
    main()
