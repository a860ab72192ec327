"""Fixtures shared by the suite (the parts they build on are in instances.py and helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from instances import Instance, make_instance
from processes import become_subreaper, leftovers

from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import bind


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every process a test started is gone when the session ends: one still running fails the
    session, named by its command line (and is killed)."""
    become_subreaper()
    yield
    left = leftovers()
    if left:
        pytest.fail("processes started by the tests were still running at the end:\n" + "\n".join(left), pytrace=False)


@pytest.fixture
def instance(tmp_path, monkeypatch) -> Iterator[Instance]:
    """A fresh SQLite instance with the schema, bound in this process."""
    inst = make_instance(tmp_path / "instance", "sqlite")
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    db = bind(inst.database_url)
    with db.connection_context():
        upgrade(PackRegistry.load())
    db.connect(reuse_if_open=True)
    yield inst
    db.close()


# -- the MCP clients' section of the terminal summary (the `report` fixture is in tests/clients) ---------
CLIENT_TESTS = Path(__file__).resolve().parent / "clients"
_results: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report):
    if Path(report.fspath).resolve().parent != CLIENT_TESTS:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        lines = [value for key, value in report.user_properties if key == "report"]
        _results.append((report.outcome.upper(), report.nodeid.split("::", 1)[-1], "; ".join(lines)))


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    terminalreporter.section("MCP clients against a running Poggio")
    for outcome, test, detail in _results:
        terminalreporter.write_line(f"{outcome:7} {test}" + (f"\n        {detail}" if detail else ""))
