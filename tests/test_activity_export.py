"""The activity export streams a million records in bounded memory (marked slow: it builds the million)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import time

import pytest
from instances import ROOT, make_instance

from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import database
from poggio.storage.models import Workspace

pytestmark = pytest.mark.slow
ROWS = 1_000_000

# the CLI in a process of its own, which says how much memory it ever held
EXPORT = """
import resource, sys
from poggio.commands.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    sys.stdout.flush()
    print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def export(env: dict, *args: str) -> tuple[int, int, int]:
    """(lines written, bytes written, peak RSS in MB) of ``poggio activity export``, read as it streams."""
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORT, "activity", "export", "--workspace", "acme", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = size = 0
    for chunk in iter(lambda: proc.stdout.read(1 << 16), b""):
        lines += chunk.count(b"\n")
        size += len(chunk)
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    rss = int(err.split("maxrss_kb")[-1].split()[0]) // 1024
    return lines, size, rss


def test_a_million_records_export_in_bounded_memory(tmp_path):
    inst = make_instance(tmp_path / "big", "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    database.close()
    conn = sqlite3.connect(inst.path / "poggio.db")
    start = dt.datetime(2026, 1, 1)
    rows = (
        (
            ws.id,
            "token",
            i % 50,
            (start + dt.timedelta(seconds=i)).isoformat(sep=" "),
            "search_accounts",
            "ok" if i % 7 else "refused",
            3.25,
            "claude-ai 1.0",
            "203.0.113.7",
        )
        for i in range(ROWS)
    )
    with conn:
        conn.executemany(
            "INSERT INTO activity (workspace_id, kind, subject_id, at, tool, outcome, latency_ms, "
            "client, ip)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()
    env = {**__import__("os").environ, **inst.env, "PYTHONPATH": str(ROOT)}
    _, _, baseline = export(env, "--since", "2030-01-01")  # nothing to export: the command's own footprint
    began = time.monotonic()
    lines, size, peak = export(env, "--format", "csv")
    took = time.monotonic() - began
    assert lines == ROWS + 1  # and the header
    assert size > 60_000_000
    assert peak - baseline < 40, (peak, baseline)  # tens of MB of chunks at most, whatever the total
    print(f"\n{ROWS:,} records, {size / 1e6:.0f} MB of CSV in {took:.1f} s; peak RSS {peak} MB against {baseline} MB")
