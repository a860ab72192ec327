"""Write tools on PostgreSQL, in process: what a call costs alone and how many eight threads serve.

    .venv/bin/python benchmarks/pg_writes.py --calls 1000 --runs 2 [--before /tmp/before] [--sqlite]

Each run is a fresh process on a fresh schema of the test server (``POGGIO_TEST_POSTGRES_URL``),
or with ``--sqlite`` a fresh SQLite file, with a demo workspace of 50 accounts. Per tool: ``--calls``
calls one after the other on one connection (wall and CPU microseconds per call: on PostgreSQL each
round trip is waited out), then the same number from eight threads, each on its own connection
(calls per second).
update_opportunity changes one and the same deal every time: its writers take turns on one row
lock. With ``--before`` another checkout is timed alternately with this one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CASES = {
    "add_note": lambda i: {"domain": "example.com", "text": f"note {i}"},
    "update_opportunity": lambda i: {"id": 1, "amount": f"{1000 + i}.00"},
}


def child(calls: int, backend: str) -> None:
    """Run in the checkout under test (its PYTHONPATH): one line per tool."""
    from instances import drop_instance, make_instance

    from poggio.commands import demo
    from poggio.runtime.packs import CursorCodec
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import database

    inst = make_instance(Path(tempfile.mkdtemp(prefix="pg-writes-")), backend)
    inst.activate()
    registry = PackRegistry.load()
    try:
        with database.connection_context():
            upgrade(registry)
            workspace = demo.build(registry, "acme", accounts=50).workspace
        for tool, arguments in CASES.items():
            ctx = registry.tool_context(
                CursorCodec(b"k" * 16),
                workspace.id,
                1,
                None,
                tool,
                writable=True,
                caller="benchmark",
                token_kind="token",
            )
            run = registry.tool(tool).run
            with database.connection_context():
                for i in range(50):  # warm: statements prepared, pool filled
                    run(ctx, arguments(i))
                wall, cpu = time.perf_counter(), time.process_time()
                for i in range(calls):
                    run(ctx, arguments(100 + i))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

            def worker(k: int, run=run, ctx=ctx, arguments=arguments) -> None:
                with database.connection_context():
                    for i in range(calls // 8):
                        run(ctx, arguments(10_000 * (k + 1) + i))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate = (calls // 8 * 8) / (time.perf_counter() - started)
            print(
                f"{tool:20} sequential {wall / calls * 1e6:6.0f} us/call (CPU {cpu / calls * 1e6:4.0f} us), "
                f"8 threads {rate:5.0f} calls/s",
                flush=True,
            )
    finally:
        drop_instance(inst)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--before", type=Path, help="another checkout, timed alternately with this one")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.calls, "sqlite" if args.sqlite else "postgres")
        return
    here = Path(__file__).resolve().parent.parent
    checkouts = {"before": args.before.resolve(), "after": here} if args.before else {"this": here}
    for _ in range(args.runs):
        for label, code in checkouts.items():
            path = os.pathsep.join(str(p) for p in (code, code / "plugins", code / "tests"))
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--calls",
                    str(args.calls),
                    *(["--sqlite"] if args.sqlite else []),
                ],
                cwd=code,
                env={**os.environ, "PYTHONPATH": path},
                check=True,
                capture_output=True,
                text=True,
            )
            for line in out.stdout.splitlines():
                print(f"{label:6} {line}", flush=True)


if __name__ == "__main__":
    main()
