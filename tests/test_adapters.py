"""Every private attribute of a library Poggio uses is behind one adapter module per library
(poggio/adapters/, mcp_server/sdk.py, and the lean path's SdkAdapter), and each adapter's check fails
loudly, naming the attribute, when a release of its library changes it: here against the installed
versions, and against a library changed under it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import peewee
import pytest
from playhouse.pool import PooledDatabase

from mcp_server import sdk
from poggio.adapters import peewee as peewee_adapter
from poggio.adapters import prometheus as prometheus_adapter
from poggio.adapters import psycopg2 as psycopg2_adapter

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = (peewee_adapter, prometheus_adapter, psycopg2_adapter, sdk)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_adapter_fits_the_installed_library(adapter):
    adapter.check()


def test_peewee_adapter_names_what_changed(monkeypatch):
    monkeypatch.setattr(peewee.Select, "_get_cursor_wrapper", None, raising=False)  # as if renamed

    def _close_raw(self, connection):  # renamed argument
        pass

    monkeypatch.setattr(PooledDatabase, "_close_raw", _close_raw)
    with pytest.raises(RuntimeError) as failed:
        peewee_adapter.check()
    assert "peewee.Select._get_cursor_wrapper is gone" in str(failed.value)
    assert "PooledDatabase._close_raw now takes (self, connection)" in str(failed.value)


def test_prometheus_adapter_names_what_changed(monkeypatch):
    from prometheus_client import values

    monkeypatch.setattr(values, "MultiProcessValue", lambda: type("Value", (), {}))
    with pytest.raises(RuntimeError, match="MultiProcessValue\\(\\) no longer marks its class _multiprocess"):
        prometheus_adapter.check()


def test_psycopg2_adapter_names_what_changed(monkeypatch):
    monkeypatch.setitem(psycopg2_adapter.CURSOR_METHODS, "execute", "execute(query, params=None)")
    with pytest.raises(RuntimeError, match=re.escape("cursor.execute is no longer execute(query, params=None)")):
        psycopg2_adapter.check()


def test_sdk_adapter_names_what_changed(monkeypatch):
    class Renamed:
        def __init__(self, name):
            self._lowlevel = object()

    monkeypatch.setattr(sdk, "MCPServer", Renamed)
    with pytest.raises(RuntimeError, match="MCPServer._lowlevel_server is NoneType, not a low-level Server"):
        sdk.check()


# a library's private attribute, read outside its adapter: ``obj._name`` on something not our own
PRIVATE = re.compile(r"\b(?:_get_cursor_wrapper|__data__|_dirty|__rel__|_lowlevel_server|_multiprocess)\b")
ALLOWED = {
    "poggio/adapters/peewee.py",
    "poggio/adapters/prometheus.py",
    "mcp_server/sdk.py",
    "mcp_server/lean.py",  # SdkAdapter's docstring names the attribute it reads through mcp_server.sdk
}


def test_no_private_attribute_outside_its_adapter():
    files = subprocess.run(
        ["git", "ls-files", "poggio", "mcp_server", "portal", "plugins", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = [
        f"{path}:{n}: {line.strip()}"
        for path in files
        if path.endswith(".py") and path not in ALLOWED
        for n, line in enumerate((ROOT / path).read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []
