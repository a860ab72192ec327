"""Database binding: PostgreSQL sessions get Poggio's planner setting and keep the URL's own options."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from instances import PG_URL

from poggio.db import open_database

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("options,search_path,cost", [
    (None, '"$user", public', "1.1"),
    ("-csearch_path=pg_catalog", "pg_catalog", "1.1"),
    ("-c random_page_cost=3 -csearch_path=pg_catalog", "pg_catalog", "3"),  # the URL's own setting wins
])
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

    from poggio.cli import main
    from poggio.db import database

    inst = make_instance(tmp_path / "instance", "postgres")
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    analysed = ("SELECT relname, last_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname IN ('account', 'contact', 'opportunity')")
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["db", "upgrade"], catch_exceptions=False).exit_code == 0
        assert set(dict(database.execute_sql(analysed).fetchall()).values()) == {None}
        assert runner.invoke(main, ["demo", "--accounts", "30"], catch_exceptions=False).exit_code == 0
        after_demo = dict(database.execute_sql(analysed).fetchall())
        assert None not in after_demo.values(), after_demo
        (tmp_path / "more.csv").write_text("domain,name,industry,employees,country,description\n"
                                           "more.example,More,,,,\n")
        result = runner.invoke(main, ["import", "accounts", str(tmp_path / "more.csv"), "--workspace", "acme"],
                               catch_exceptions=False)
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

    from poggio import db as poggio_db

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
