"""What the search index costs an import, against an index of one row per object, outside Poggio.

    .venv/bin/python benchmarks/search_index.py [--accounts 50000] [--runs 3] [--postgres]

Writes the search words of ``--accounts`` generated accounts (their name and domain, split by
:func:`poggio.runtime.search.words`, as an import does) into a fresh table, in one transaction, and prints
the best of ``--runs``:

- ``search_term`` as Poggio keeps it: one row per word, with its two B-tree indexes.
- One row per account with its words in one text, indexed for full-text search. On SQLite this is a contentless FTS5
  table; on PostgreSQL it is a generated ``tsvector`` column under a GIN index. Both answer prefix queries.

The second layout is what the bulk targets of issue 13 would need. It is not Poggio's: it cannot walk
matches in the closest-first order that the search tools promise (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import io
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bulk_inprocess import account_domains  # noqa: E402
from poggio.runtime.search import words  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def accounts(count: int) -> list[tuple[int, list[str]]]:
    """``(id, distinct words)`` of the ``count`` accounts that ``bulk_inprocess.py`` imports."""
    return [
        (i + 1, list(dict.fromkeys(words(f"Company {i} Holdings") + words(domain))))
        for i, domain in enumerate(account_domains(random.Random(1), count))
    ]


def best(runs: int, once, *args) -> float:
    return min(once(*args) for _ in range(runs))


def sqlite_once(ddl: list[str], insert: str, values: list[tuple]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "index.db", isolation_level=None)
        for pragma in ("journal_mode=wal", "synchronous=normal", "cache_size=-32000"):
            conn.execute(f"PRAGMA {pragma}")
        for statement in ddl:
            conn.execute(statement)
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(insert, values)
        conn.execute("COMMIT")
        took = time.perf_counter() - started
        conn.close()
        return took


def postgres_once(conn, ddl: str, copy: str, data: str) -> float:
    cur = conn.cursor()
    cur.execute(
        "DROP SCHEMA IF EXISTS search_index_bench CASCADE; CREATE SCHEMA search_index_bench; "
        "SET search_path = search_index_bench"
    )
    cur.execute(ddl)
    conn.commit()
    started = time.perf_counter()
    cur.copy_expert(copy, io.StringIO(data))
    conn.commit()
    return time.perf_counter() - started


def sqlite(rows, runs: int) -> None:
    terms = [(term, ref) for ref, found in rows for term in found]
    texts = [(ref, " ".join(found)) for ref, found in rows]
    layouts = {
        f"search_term, {len(terms):,} rows, two B-tree indexes": (
            [
                "CREATE TABLE search_term (id INTEGER PRIMARY KEY, workspace_id INT, kind TEXT, term TEXT, ref_id INT)",
                "CREATE INDEX by_term ON search_term (workspace_id, kind, term, ref_id)",
                "CREATE INDEX by_ref ON search_term (kind, ref_id, term)",
            ],
            "INSERT INTO search_term (workspace_id, kind, term, ref_id) VALUES (1, 'account', ?, ?)",
            terms,
        ),
        f"FTS5, {len(texts):,} rows (contentless, detail=none)": (
            ["CREATE VIRTUAL TABLE search_text USING fts5(words, content='', detail=none, columnsize=0)"],
            "INSERT INTO search_text (rowid, words) VALUES (?, ?)",
            texts,
        ),
    }
    for label, layout in layouts.items():
        print(f"SQLite      {label}: {best(runs, sqlite_once, *layout):.3f} s")


def postgres(rows, runs: int) -> None:
    import psycopg2

    terms = "".join(f"{term}\t{ref}\n" for ref, found in rows for term in found)
    texts = "".join(f"{ref}\t{' '.join(found)}\n" for ref, found in rows)
    layouts = {
        "search_term, one row per word, two B-tree indexes, COPY": (
            "CREATE TABLE search_term (id serial PRIMARY KEY, workspace_id int DEFAULT 1, kind text DEFAULT 'account', "
            "term text, ref_id int); CREATE INDEX by_term ON search_term (workspace_id, kind, term, ref_id); "
            "CREATE INDEX by_ref ON search_term (kind, ref_id, term)",
            "COPY search_term (term, ref_id) FROM STDIN",
            terms,
        ),
        "one row per account, tsvector under GIN, COPY": (
            "CREATE TABLE search_text (ref_id int PRIMARY KEY, words text, "
            "vector tsvector GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED); "
            "CREATE INDEX by_word ON search_text USING gin (vector)",
            "COPY search_text (ref_id, words) FROM STDIN",
            texts,
        ),
    }
    conn = psycopg2.connect(PG_URL)
    try:
        for label, layout in layouts.items():
            print(f"PostgreSQL  {label}: {best(runs, postgres_once, conn, *layout):.3f} s")
    finally:
        conn.rollback()
        conn.cursor().execute("DROP SCHEMA IF EXISTS search_index_bench CASCADE")
        conn.commit()
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help=f"also on PostgreSQL ({PG_URL})")
    args = parser.parse_args()
    rows = accounts(args.accounts)
    sqlite(rows, args.runs)
    if args.postgres:
        postgres(rows, args.runs)


if __name__ == "__main__":
    main()
