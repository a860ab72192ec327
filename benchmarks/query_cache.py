"""Can the core cache a plain peewee query's SQL by its shape, transparently? Where a look-up's time goes.

    .venv/bin/python benchmarks/query_cache.py [--calls 20000] [--runs 3]

One look-up of an account by domain (what find_account does for every write tool and
get_revenue_summary), on a SQLite file with a small demo workspace, timed per call (µs, best of
``--runs``) as a pack writes it:

- ``plain``: ``Account.get_or_none((Account.workspace == w) & (Account.domain == d))``, all of it;
- ``build``: only building that query object (no SQL yet);
- ``build + sql``: building it and compiling its SQL (``query.sql()``), not running it;
- ``build + shape key``: building it and walking it for a cache key with its values pulled out: the
  least a transparent cache keyed by the query's shape must do at every call, before any saving;
- ``prepared``: :class:`poggio.advanced.Prepared` (built and compiled once, values bound per call).

A transparent cache can save at most ``build + sql`` minus ``build + shape key`` per call; ``plain``
minus ``prepared`` is what the advanced API saves.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def shape_key(node, values: list) -> tuple:
    """A hashable key of ``node``'s shape, its literal values appended to ``values`` (a sketch of the
    walk a transparent cache needs: peewee's nodes keep their parts in attributes)."""
    from peewee import Node, Value

    if isinstance(node, Value):
        values.append(node.value)
        return ("?",)
    if isinstance(node, Node):
        return (type(node).__name__,) + tuple(
            shape_key(v, values)
            for k, v in sorted(vars(node).items())
            if not k.startswith("_") or k in ("_where", "_from_list", "_returning", "_order_by", "_limit")
        )
    if isinstance(node, (list, tuple)):
        return tuple(shape_key(v, values) for v in node)
    if isinstance(node, (str, int, float, type(None), bool)):
        return (node,)
    return (type(node).__name__,)


def timed(fn, calls: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from poggio.advanced import Prepared, slot
    from poggio.commands import demo
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import bind
    from poggio_accounts import Account

    bind(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    upgrade(PackRegistry.load())
    ws = demo.build(PackRegistry.load(), "acme", accounts=200).workspace.id
    domain = "example.com"

    def query():
        return Account.select().where((Account.workspace == ws) & (Account.domain == domain))

    by_domain = Prepared(
        lambda: Account.select().where((Account.workspace == slot("w")) & (Account.domain == slot("d")))
    )
    assert by_domain.first(w=ws, d=domain).id == query().get().id
    cases = {
        "plain": lambda: Account.get_or_none((Account.workspace == ws) & (Account.domain == domain)),
        "build": query,
        "build + sql": lambda: query().sql(),
        "build + shape key": lambda: shape_key(query(), []),
        "prepared": lambda: by_domain.first(w=ws, d=domain),
    }
    for name, fn in cases.items():
        print(f"{name:20} {timed(fn, args.calls, args.runs):7.1f} µs/call")


if __name__ == "__main__":
    main()
