"""Bulk writes (``poggio import``, the demo) on SQLite and PostgreSQL: chunked, all-or-nothing, every
search term and day total written, memory bounded whatever the file's size."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import revenue_day_totals
from instances import BACKENDS, ROOT, drop_instance, make_instance

from poggio.commands import csv_import
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime import search
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.runtime.search import SearchTerm
from poggio_accounts.models import Account
from poggio_contacts.models import Contact


@pytest.fixture(params=BACKENDS)
def setup(request, tmp_path, monkeypatch):
    inst = make_instance(tmp_path / "bulk", request.param)
    db = inst.activate()
    registry = PackRegistry.load()
    monkeypatch.setattr(csv_import, "CHUNK", 40)  # several chunks from a small file
    with db.connection_context():
        upgrade(registry)
        ws = create_workspace("bulk", "Bulk", True, Actor.cli())
        other = create_workspace("other", "Other", True, Actor.cli())
        yield registry, ws, other
    drop_instance(inst)


def _accounts_csv(count: int, bad_line: int | None = None, prefix: str = "co") -> bytes:
    lines = ["domain,name,industry,employees,country,description"]
    for i in range(count):
        employees = "many" if i + 2 == bad_line else str(i + 1)
        lines.append(f"{prefix}{i}.example,Compañía {i} Holdings,Software,{employees},DE,Maker of things {i}")
    return ("\n".join(lines) + "\n").encode()


def _import(registry, ws, kind: str, data: bytes):
    return csv_import.import_csv(registry, ws, kind, data, Actor.cli())


def _terms(workspace_id: int) -> set[tuple[str, str, int]]:
    return set(
        SearchTerm.select(SearchTerm.kind, SearchTerm.term, SearchTerm.ref_id)
        .where(SearchTerm.workspace == workspace_id)
        .tuples()
    )


def test_a_bad_row_in_the_last_chunk_leaves_nothing_written(setup):
    registry, ws, _ = setup
    rows = 203  # six chunks of 40, the bad row in the last
    report = _import(registry, ws, "accounts", _accounts_csv(rows, bad_line=rows + 1))
    assert report.imported == 0 and [(line, field) for line, field, _ in report.errors] == [(rows + 1, "employees")]
    assert Account.select().where(Account.workspace == ws.id).count() == 0
    assert _terms(ws.id) == set()


def test_every_row_and_search_term_written_over_chunks(setup):
    registry, ws, other = setup
    assert _import(registry, other, "accounts", _accounts_csv(50, prefix="x")).imported == 50  # before, elsewhere
    report = _import(registry, ws, "accounts", _accounts_csv(203))
    assert report.imported == 203 and not report.errors
    accounts = list(Account.select().where(Account.workspace == ws.id).order_by(Account.id))
    assert len(accounts) == 203 and len({a.id for a in accounts}) == 203
    expected = {("account", w, a.id) for a in accounts for w in search.words(a.name) + search.words(a.domain)}
    assert _terms(ws.id) == expected
    contacts = "email,first_name,last_name,title,account_domain\n" + "".join(
        f"p{n}.{i}@co{i}.example,Zoë{n},Person{i},Buyer,co{i}.example\n" for i in range(0, 203, 2) for n in range(2)
    )
    assert _import(registry, ws, "contacts", contacts.encode()).imported == 204
    people = list(Contact.select().where(Contact.workspace == ws.id))
    expected |= {
        ("contact", w, c.id)
        for c in people
        for w in search.words(c.first_name) + search.words(c.last_name) + search.words(c.email) + search.words(c.title)
    }
    assert _terms(ws.id) == expected
    elsewhere = Account.select().where(Account.workspace == other.id)
    assert _terms(other.id) == {
        ("account", w, a.id) for a in elsewhere for w in search.words(a.name) + search.words(a.domain)
    }


def test_day_totals_add_up_over_chunks_and_earlier_deals(setup):
    registry, ws, _ = setup
    _import(registry, ws, "accounts", _accounts_csv(30))
    deals = "account_domain,name,stage,amount,currency,close_date\n" + "".join(
        f"co{i % 30}.example,Deal {i},{('won', 'lost', 'proposal')[i % 3]},{1000 + i}.25,{('EUR', 'USD')[i % 2]},"
        f"2026-0{1 + i % 4}-1{i % 5}\n"
        for i in range(170)
    )
    assert _import(registry, ws, "opportunities", deals.encode()).imported == 170
    assert _import(registry, ws, "opportunities", deals.encode()).imported == 170  # the same days again
    kept, expected = revenue_day_totals(ws.id)
    assert kept == expected and sum(n for n, _ in kept.values()) == 340


# the CLI in a process of its own, which says how much memory it ever held
IMPORT = """
import resource, sys
from poggio.commands.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def test_import_memory_does_not_grow_with_the_file(tmp_path):
    inst = make_instance(tmp_path / "rss", "sqlite")
    env = {**os.environ, **inst.env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}

    def cli(*args: str) -> int:
        proc = subprocess.run([sys.executable, "-c", IMPORT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stderr.split("maxrss_kb")[-1].split()[0]) // 1024

    cli("db", "upgrade")
    cli("workspace", "create", "bulk", "--name", "Bulk")
    peaks = []
    for n, rows in enumerate((5_000, 60_000)):
        path = tmp_path / f"accounts{n}.csv"
        path.write_bytes(_accounts_csv(rows, prefix=f"f{n}-"))
        peaks.append(cli("import", "accounts", str(path), "--workspace", "bulk"))
    assert peaks[1] - peaks[0] < 30, peaks  # chunks, not the file: 12x the rows, about the same peak


@pytest.mark.parametrize("few", [0, 16], ids=["as-json", "row-by-row"])
def test_text_that_looks_like_copy_syntax_comes_back_as_written(setup, few, monkeypatch):
    """Both ways SQLite is given a batch: a long one as JSON, a short one row by row."""
    from poggio.storage import bulk
    from poggio.storage.db import utcnow
    from poggio_accounts.models import insert_accounts

    monkeypatch.setattr(bulk, "FEW", few)
    _, ws, _ = setup
    tricky = ["tab\there", "line\nbreak\r\nend", "back\\slash", "\\N", "\\", "", "naïve ☃ 𝄞"]
    insert_accounts(
        ws.id,
        [
            {"domain": f"t{i}.example", "name": text or "x", "description": text, "employees": None if i % 2 else i}
            for i, text in enumerate(tricky)
        ],
        utcnow(),
    )
    rows = list(Account.select().where(Account.workspace == ws.id).order_by(Account.id))
    assert [r.description for r in rows] == tricky
    assert [r.employees for r in rows] == [None if i % 2 else i for i in range(len(tricky))]


def test_values_common_to_every_row_are_written_as_given(setup):
    from poggio.storage.bulk import insert_rows

    _, ws, _ = setup
    kind = "it's a\ttab \\N"  # a quote for the SQL literal, a tab and a backslash for COPY
    assert (
        insert_rows(
            SearchTerm,
            [SearchTerm.term, SearchTerm.ref_id],
            [("one", 1), ("two", 2), ("a\\b", 3)],
            batch=2,
            same={SearchTerm.workspace: ws.id, SearchTerm.kind: kind},
        )
        == 3
    )
    assert _terms(ws.id) == {(kind, "one", 1), (kind, "two", 2), (kind, "a\\b", 3)}
    with pytest.raises(TypeError):
        insert_rows(SearchTerm, [SearchTerm.term, SearchTerm.ref_id], [("x", 4)], same={SearchTerm.kind: 1.5})


def test_a_batch_is_written_while_another_thread_keeps_the_interpreter_busy(setup):
    """A batch is one statement, which SQLite runs without the interpreter's lock: the usage flush
    writing its activity rows beside an MCP server's busy event loop finishes in its own time. Row by
    row (``executemany``), the writing thread took the lock back after every row and waited up to a
    switch interval (5 ms) for the busy thread each time: 2,000 rows took seconds, and the flush held
    SQLite's write lock all that while."""
    from poggio.storage.bulk import insert_rows
    from poggio.storage.db import database, writing

    _, ws, _ = setup
    done, took = threading.Event(), []

    def flush():
        try:
            with database.connection_context(), writing():
                start = time.perf_counter()
                insert_rows(
                    SearchTerm,
                    [SearchTerm.term, SearchTerm.ref_id],
                    [(f"t{i}", i) for i in range(2000)],
                    same={SearchTerm.workspace: ws.id, SearchTerm.kind: "busy"},
                )
                took.append(time.perf_counter() - start)
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's default, whatever the test run set
    try:
        writer = threading.Thread(target=flush)
        writer.start()
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            sum(range(100))  # Python, never waiting: the interpreter's lock is given up only when asked
        writer.join()
    finally:
        sys.setswitchinterval(interval)
    assert took and took[0] < 1.5, took
    assert SearchTerm.select().where(SearchTerm.kind == "busy").count() == 2000


@pytest.mark.parametrize("few", [0, 16], ids=["as-json", "row-by-row"])
def test_times_numbers_and_nulls_come_back_as_written(setup, few, monkeypatch):
    """The activity rows of a usage flush: datetimes with and without microseconds, floats, NULLs."""
    import datetime as dt

    from poggio.records.usage import ACTIVITY_FIELDS
    from poggio.storage import bulk
    from poggio.storage.models import Activity

    monkeypatch.setattr(bulk, "FEW", few)
    _, ws, _ = setup
    start = dt.datetime(2026, 12, 2, 6, 30)
    rows = [
        (
            ws.id,
            "token",
            i,
            start + dt.timedelta(seconds=i, microseconds=0 if i % 3 else 123456),
            "get_account",
            "ok",
            i / 7,
            None if i % 2 else "curl/8.5",
            None if i % 5 else "2001:db8::1",
        )
        for i in range(20)
    ]
    assert bulk.insert_rows(Activity, ACTIVITY_FIELDS, rows) == 20
    stored = Activity.select(*ACTIVITY_FIELDS).where(Activity.workspace == ws.id).order_by(Activity.subject_id).tuples()
    assert [tuple(r) for r in stored] == [(*r[:6], pytest.approx(r[6]), *r[7:]) for r in rows]


@pytest.mark.parametrize("in_transaction", [True, False], ids=["held", "at-once"])
def test_rows_held_for_the_next_statement_come_back_as_written(setup, in_transaction):
    """``later=True`` (a tool's few rows): on PostgreSQL sent with the transaction's next statement,
    outside one at once; on SQLite as any short batch. Text with a "%" is bound, never read as a
    placeholder."""
    import contextlib

    from poggio.storage.bulk import insert_rows
    from poggio.storage.db import writing

    _, ws, _ = setup
    rows = [("100%", 1), ("%s", 2), ("50%%", 3), ("it's", 4)]
    with writing() if in_transaction else contextlib.nullcontext():
        assert (
            insert_rows(
                SearchTerm,
                [SearchTerm.term, SearchTerm.ref_id],
                rows,
                later=True,
                same={SearchTerm.workspace: ws.id, SearchTerm.kind: "k%"},
            )
            == 4
        )
        assert _terms(ws.id) == {("k%", term, ref) for term, ref in rows}  # the next statement sees them
    assert _terms(ws.id) == {("k%", term, ref) for term, ref in rows}
