"""The client tests' report: after the run, CI's log lists each client test with its result and
what it showed (for the conformance suite: scenarios passed, expected failures, unexpected ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_results: list[tuple[str, str, str]] = []


@pytest.fixture
def report(request):
    """``report("...")``: one line for this test in the clients section of the terminal summary."""
    return lambda line: request.node.user_properties.append(("report", line))


def pytest_runtest_logreport(report):
    if Path(report.fspath).resolve().parent != HERE:
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
