"""Database binding: PostgreSQL sessions get Poggio's planner setting and keep the URL's own options."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from instances import PG_URL, round_trips
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from poggio.storage.db import open_database

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    "options,search_path,cost",
    [
        (None, '"$user", public', "1.1"),
        ("-csearch_path=pg_catalog", "pg_catalog", "1.1"),
        ("-c random_page_cost=3 -csearch_path=pg_catalog", "pg_catalog", "3"),  # the URL's own setting wins
    ],
)
def test_postgres_sessions_plan_for_cached_data_and_keep_the_url_options(options, search_path, cost):
    sep = "&" if "?" in PG_URL else "?"
    url = PG_URL + (f"{sep}options={quote(options)}" if options else "")
    db = open_database(url)
    try:
        with db.connection_context():
            assert db.execute_sql("SHOW random_page_cost").fetchone()[0] == cost
            assert db.execute_sql("SHOW search_path").fetchone()[0] == search_path
    finally:
        db.close_all()


def test_postgres_statement_timeout_cancels_a_long_statement():
    """The MCP server's sessions: a statement running past the tool timeout (and its grace) is cancelled."""
    import time

    from peewee import DatabaseError

    db = open_database(PG_URL, statement_timeout=0.5)
    try:
        with db.connection_context():
            assert db.execute_sql("SHOW statement_timeout").fetchone()[0] == "500ms"
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="statement timeout"):
                db.execute_sql("SELECT pg_sleep(5)")
            assert time.monotonic() - started < 2
    finally:
        db.close_all()


def test_demo_and_import_leave_the_planner_statistics_of_what_they_wrote(tmp_path, monkeypatch):
    """After a bulk write PostgreSQL plans with counted rows, not autovacuum's say-so (which may never
    come: it can be off): `poggio demo` and `poggio import` ANALYZE the schema's tables."""
    from click.testing import CliRunner
    from instances import drop_instance, make_instance

    from poggio.commands.cli import main
    from poggio.storage.db import database

    inst = make_instance(tmp_path / "instance", "postgres")
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    analysed = (
        "SELECT relname, last_analyze FROM pg_stat_user_tables "
        "WHERE schemaname = current_schema() AND relname IN ('account', 'contact', 'opportunity')"
    )
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["db", "upgrade"], catch_exceptions=False).exit_code == 0
        assert set(dict(database.execute_sql(analysed).fetchall()).values()) == {None}
        assert runner.invoke(main, ["demo", "--accounts", "30"], catch_exceptions=False).exit_code == 0
        after_demo = dict(database.execute_sql(analysed).fetchall())
        assert None not in after_demo.values(), after_demo
        (tmp_path / "more.csv").write_text(
            "domain,name,industry,employees,country,description\nmore.example,More,,,,\n"
        )
        result = runner.invoke(
            main, ["import", "accounts", str(tmp_path / "more.csv"), "--workspace", "acme"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert dict(database.execute_sql(analysed).fetchall())["account"] > after_demo["account"]
    finally:
        database.close_all() if hasattr(database.obj, "close_all") else database.close()
        drop_instance(inst)


def _last_statement(pid: int) -> str:
    import psycopg2

    admin = psycopg2.connect(PG_URL)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
            return cur.fetchone()[0]
    finally:
        admin.close()


def test_a_connection_back_from_a_request_is_handed_out_without_a_round_trip():
    """peewee's pool asked the server (SELECT 1) at every check-out, a round trip per request with
    the database's lock held; a connection returned moments ago is now handed out as it is."""
    db = open_database(PG_URL)
    try:
        with db.connection_context():
            pid = db.connection().get_backend_pid()
            db.execute_sql("SELECT 'the last thing this connection ran'")
        with db.connection_context():
            assert db.connection().get_backend_pid() == pid
            assert _last_statement(pid) == "SELECT 'the last thing this connection ran'"
    finally:
        db.close_all()


def test_a_connection_idle_in_the_pool_is_checked_and_replaced_when_the_server_cut_it(monkeypatch):
    import psycopg2

    from poggio.storage import db as poggio_db

    db = open_database(PG_URL)
    try:
        with db.connection_context():
            pid = db.connection().get_backend_pid()
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        monkeypatch.setattr(poggio_db, "PING_AFTER", 0.0)  # as if it had sat idle for long
        with db.connection_context():
            assert db.connection().get_backend_pid() != pid
            assert db.execute_sql("SELECT 1").fetchone() == (1,)
    finally:
        db.close_all()


# -- statements held back to share a round trip (HoldingConnection) --------------------------------
def _bound(monkeypatch):
    """A PostgreSQL database, bound as the one the code uses (for this test)."""
    from peewee import DatabaseProxy

    from poggio.storage import db as poggio_db

    db = open_database(PG_URL)
    proxy = DatabaseProxy()
    proxy.initialize(db)
    monkeypatch.setattr(poggio_db, "database", proxy)
    return db


@pytest.fixture
def held_db(monkeypatch):
    """A PostgreSQL database bound as the one the code uses, on one connection with a temporary
    table, and the list of what each round trip sent."""
    db = _bound(monkeypatch)
    trips = round_trips(monkeypatch)
    try:
        with db.connection_context():
            db.execute_sql("CREATE TEMP TABLE held (id integer PRIMARY KEY, note text)")
            trips.clear()
            yield db, trips
    finally:
        db.close_all()


def _notes(db) -> list:
    return [n for (n,) in db.execute_sql("SELECT note FROM held ORDER BY id").fetchall()]


def test_a_write_transaction_sends_begin_and_held_writes_with_its_statements(held_db):
    """BEGIN goes with the transaction's first statement, a held write with the next one (which sees
    it) or with the COMMIT: three statements and a COMMIT in two round trips."""
    from poggio.storage.db import write_later

    db, trips = held_db
    pid = db.connection().get_backend_pid()
    with db.atomic():
        write_later("INSERT INTO held VALUES (%s, %s)", (1, "100% 'quoted' %s"))
        assert trips == []  # nothing sent yet, not even the BEGIN
        assert db.execute_sql("SELECT count(*) FROM held").fetchone() == (1,)
        write_later("INSERT INTO held VALUES (%s, %s)", (2, "second"))
    assert len(trips) == 2
    assert _last_statement(pid) == "INSERT INTO held VALUES (2, 'second');\nCOMMIT"
    assert db.connection().get_transaction_status() == TRANSACTION_STATUS_IDLE
    assert _notes(db) == ["100% 'quoted' %s", "second"]


def test_held_writes_of_a_rolled_back_transaction_are_never_sent(held_db):
    from poggio.storage.db import write_later

    db, trips = held_db
    with pytest.raises(RuntimeError), db.atomic():
        write_later("INSERT INTO held VALUES (%s, %s)", (1, "never"))
        raise RuntimeError("the tool failed")
    with db.atomic():  # begun and ended without a statement
        pass
    assert trips == []  # neither transaction cost a round trip
    with pytest.raises(RuntimeError), db.atomic():
        db.execute_sql("INSERT INTO held VALUES (2, 'sent')")
        write_later("INSERT INTO held VALUES (%s, %s)", (3, "held"))
        raise RuntimeError("the tool failed")
    assert _notes(db) == []


def test_a_failing_held_write_fails_the_commit_and_the_whole_transaction(held_db):
    from peewee import IntegrityError

    from poggio.storage.db import write_later

    db, _ = held_db
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql("INSERT INTO held VALUES (1, 'first')")
        write_later("INSERT INTO held VALUES (%s, %s)", (1, "the same key"))
    assert _notes(db) == []
    assert db.connection().get_transaction_status() == TRANSACTION_STATUS_IDLE
    db.execute_sql("INSERT INTO held VALUES (1, 'after')")  # the connection goes on
    assert _notes(db) == ["after"]


def test_held_writes_go_ahead_of_copy_and_executemany_and_run_at_once_outside_a_transaction(held_db):
    import io

    from poggio.storage.db import write_later

    db, _ = held_db
    write_later("INSERT INTO held VALUES (%s, %s)", (1, "at once"))
    assert db.connection().held == [] and _notes(db) == ["at once"]
    with db.atomic():
        write_later("INSERT INTO held VALUES (%s, %s)", (2, "held"))
        db.cursor().copy_expert("COPY held (id, note) FROM STDIN", io.StringIO("3\tcopied\n"))
        write_later("INSERT INTO held VALUES (%s, %s)", (4, "held again"))
        db.cursor().executemany("INSERT INTO held VALUES (%s, %s)", [(5, "many")])
    assert _notes(db) == ["at once", "held", "copied", "held again", "many"]


def test_a_transaction_left_open_leaves_nothing_held_to_the_next_user_of_its_connection(monkeypatch):
    from poggio.storage.db import write_later

    db = _bound(monkeypatch)
    try:
        with db.connection_context():
            conn = db.connection()
            db.execute_sql("CREATE TEMP TABLE held (id integer PRIMARY KEY, note text)")  # kept by the session
        with db.connection_context():
            assert db.connection() is conn
            db.begin()
            write_later("INSERT INTO held VALUES (%s, %s)", (1, "abandoned"))
        with db.connection_context():
            assert db.connection() is conn and conn.held == []
            assert _notes(db) == []
    finally:
        db.close_all()
