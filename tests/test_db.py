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
