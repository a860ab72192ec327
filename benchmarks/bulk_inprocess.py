"""One bulk write timed in process, two checkouts alternately: wall and CPU seconds of each run.

    .venv/bin/python benchmarks/bulk_inprocess.py --step accounts --rows 50000 --runs 3 --before /tmp/before
        [--postgres]

``--step`` is accounts, contacts (three per account), opportunities (two per account) or demo (of
``--rows`` accounts). Each run is a fresh process and a fresh SQLite file (or PostgreSQL schema);
the steps before the one timed (the accounts before the contacts) run untimed. Process CPU time is
printed beside wall time: on a shared machine whose load swings, it is the steadier of the two
(on PostgreSQL it leaves out the server's own work). Complements ``scale.py --bulk``, which times the
whole commands, start-up included.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
KINDS = ("accounts", "contacts", "opportunities")


def account_domains(rng: random.Random, rows: int) -> list[str]:
    """The domains of the generated accounts (their names are ``Company {i} Holdings``)."""
    return [f"company{i}-{rng.randrange(10**6)}.example" for i in range(rows)]


def files(rows: int) -> dict[str, bytes]:
    rng = random.Random(1)
    domains = account_domains(rng, rows)
    return {
        "accounts": (
            "domain,name,industry,employees,country,description\n"
            + "".join(
                f"{d},Company {i} Holdings,Software,{rng.randrange(1, 5000)},DE,Maker of things number {i}\n"
                for i, d in enumerate(domains)
            )
        ).encode(),
        "contacts": (
            "email,first_name,last_name,title,account_domain\n"
            + "".join(f"p{k}.{i}@{d},Person{k},Surname{i},Buyer,{d}\n" for i, d in enumerate(domains) for k in range(3))
        ).encode(),
        "opportunities": (
            "account_domain,name,stage,amount,currency,close_date\n"
            + "".join(
                f"{d},Deal {k},won,{rng.randrange(1000, 90000)}.50,EUR,2026-0{1 + k}-1{k}\n"
                for d in domains
                for k in range(2)
            )
        ).encode(),
    }


def child(step: str, rows: int, postgres: bool) -> None:
    """Run in the checkout under test (its PYTHONPATH): time ``step``, print 'wall cpu'."""
    folder = Path(tempfile.mkdtemp(prefix="bulk-inprocess-"))
    os.environ["POGGIO_INSTANCE_PATH"] = str(folder)
    from poggio.commands import demo
    from poggio.commands.csv_import import import_csv
    from poggio.identity import workspaces
    from poggio.records.audit import Actor
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import bind, database

    url, admin, schema = f"sqlite:///{folder / 'poggio.db'}", None, None
    if postgres:
        import psycopg2

        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        schema = f"bulk_{secrets.token_hex(3)}"
        admin.cursor().execute(f"CREATE SCHEMA {schema}")
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    bind(url)
    registry = PackRegistry.load()
    try:
        with database.connection_context():
            upgrade(registry)
            workspace = workspaces.create_workspace("bulk", "Bulk", True, Actor.cli())
            data = files(rows) if step != "demo" else {}

            def timed(work) -> tuple[float, float]:
                wall, cpu = time.perf_counter(), time.process_time()
                work()
                return time.perf_counter() - wall, time.process_time() - cpu

            if step == "demo":
                took = timed(lambda: demo.build(registry, "acme", rows, 7))
            else:
                for kind in KINDS[: KINDS.index(step) + 1]:
                    took = timed(lambda k=kind: import_csv(registry, workspace, k, data[k], Actor.cli()))
        print(f"{took[0]:.3f} {took[1]:.3f}")
    finally:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        if admin is not None:
            admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", choices=[*KINDS, "demo"], default="accounts")
    parser.add_argument("--rows", type=int, default=50_000, help="accounts (the other kinds in proportion)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout, timed alternately with this one")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.step, args.rows, args.postgres)
        return
    here = Path(__file__).resolve().parent.parent
    checkouts = {"before": args.before.resolve(), "after": here} if args.before else {"this": here}
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in checkouts}
    for _ in range(args.runs):
        for label, code in checkouts.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(code / "plugins")])}
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--step",
                    args.step,
                    "--rows",
                    str(args.rows),
                    *(["--postgres"] if args.postgres else []),
                ],
                env=env,
                cwd=code,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            results[label].append((float(out[0]), float(out[1])))
            print(f"{label:6} wall {out[0]} s, CPU {out[1]} s, load {os.getloadavg()[0]:.1f}", flush=True)
    for label, runs in results.items():
        print(
            f"{label:6} median wall {statistics.median(w for w, _ in runs):.2f} s, "
            f"CPU {statistics.median(c for _, c in runs):.2f} s over {len(runs)} run(s)"
        )


if __name__ == "__main__":
    main()
