"""The client tests' report: after the run, CI's log lists each client test with its result and
what it showed (for the conformance suite: scenarios passed, expected failures, unexpected ones).
The hooks that gather and print it are in tests/conftest.py: with several workers only the
controlling process prints the summary, and it loads no conftest below tests/."""

from __future__ import annotations

import pytest


@pytest.fixture
def report(request):
    """``report("...")``: one line for this test in the clients section of the terminal summary."""
    return lambda line: request.node.user_properties.append(("report", line))
