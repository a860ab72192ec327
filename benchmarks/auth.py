"""Cost of verifying one bearer token, as the MCP server does per request, and what bcrypt would cost.

    .venv/bin/python benchmarks/auth.py [--tokens 1000] [--rounds 20000]

Builds a temp SQLite instance with N tokens, then times TokenService.verify (shape and checksum,
SHA-256 digest, indexed look-up joined with the workspace, expiry/revocation/entitlement checks) on
one pooled connection, and bcrypt.checkpw at costs 10 and 12 for comparison. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import bcrypt

from poggio.audit import Actor
from poggio.db import bind
from poggio.plugins import PackRegistry
from poggio.schema import upgrade
from poggio.tokens import TokenService, digest, well_formed
from poggio.workspaces import create_workspace


def per_call(fn, n: int) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = bind(f"sqlite:///{tmp}/bench.db")
        with db.connection_context():
            upgrade(PackRegistry.load())
            ws = create_workspace("bench", "Bench", True, Actor.cli())
            service = TokenService(max_active_tokens=args.tokens + 1)
            issued = [service.create(ws, f"t{i}", Actor.cli(), expires="never").plaintext for i in range(args.tokens)]
            token = issued[len(issued) // 2]
            checks = per_call(lambda: well_formed(token), args.rounds)
            digests = per_call(lambda: digest(token), args.rounds)
            verify = per_call(lambda: service.verify(token), args.rounds // 4)
        print(f"tokens in the table:            {args.tokens}")
        print(f"shape + checksum:                {checks * 1e6:8.2f} µs")
        print(f"SHA-256 digest:                  {digests * 1e6:8.2f} µs")
        print(f"verify (incl. SQLite look-up):   {verify * 1e6:8.2f} µs   target < 200 µs")
        for cost in (10, 12):
            hashed = bcrypt.hashpw(token.encode(), bcrypt.gensalt(cost))
            b = per_call(lambda: bcrypt.checkpw(token.encode(), hashed), 3)
            print(f"bcrypt.checkpw cost {cost}:          {b * 1e3:8.1f} ms   = at most {1 / b:,.0f} requests/s per core")


if __name__ == "__main__":
    main()
