"""SQLite writers of several processes take turns through :class:`poggio.storage.db.WriterLock`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from instances import ROOT
from peewee import OperationalError

from poggio.storage.db import bind, database, writing

# A process writing in a loop, as an MCP server's worker threads do under load: each write holds the
# lock for a millisecond, then a short pause. Prints when each write asked for its turn and when it got
# it, on the machine's monotonic clock (one clock for all processes).
WRITER = """
import json, random, sys, time
from poggio.storage.db import bind, database, writing
path, count, hold, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bind(f"sqlite:///{path}")
rng, turns = random.Random(), []
with database.connection_context():
    while time.time() < start:
        time.sleep(0.001)
    for i in range(count):
        asked = time.monotonic()
        with writing():
            turns.append((asked, time.monotonic()))
            database.execute_sql("INSERT INTO t (x) VALUES (?)", (i,))
            if i == 0:
                print("writing", flush=True)
            time.sleep(hold)
        time.sleep(rng.uniform(0, 0.002))
print(json.dumps(turns))
"""


def _database(tmp_path) -> str:
    path = str(tmp_path / "w.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    return path


def _writer(path: str, count: int, hold: float, start: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, path, str(count), str(hold), str(start)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _overtakes(turns: list[tuple[int, float, float]]) -> list[int]:
    """For each write, how many writes of the other processes asked after it and got in before it."""
    return sorted(
        sum(1 for other, asked2, got2 in turns if other != writer and asked2 > asked and got2 < got)
        for writer, asked, got in turns
    )


@pytest.mark.serial
def test_writers_of_three_processes_are_handed_the_database_in_turn(tmp_path):
    """In SQLite's busy handler, a writer that had waited a while slept up to 100 ms between tries
    while the others kept getting in: of 1,200 such writes, one in a hundred was overtaken by 35 or
    more later writes, the worst by 100 to 190. Through the lock, the kernel hands the file to a
    waiting writer as soon as it is free: a write is overtaken by a few at most. Counted in turns,
    not milliseconds, so a busy machine that stalls every process alike does not change the answer."""
    path = _database(tmp_path)
    start = time.time() + 1.5  # all three started and bound before the first write
    writers = [_writer(path, 400, 0.001, start) for _ in range(3)]
    turns = []
    for number, writer in enumerate(writers):
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0
        turns += [(number, asked, got) for asked, got in json.loads(out.splitlines()[-1])]
    assert len(turns) == 1200
    overtakes = _overtakes(turns)
    waits = sorted(got - asked for _, asked, got in turns)
    summary = f"overtaken p99 {overtakes[1188]}, most {overtakes[-1]}; waits p99 {waits[1188] * 1000:.1f} ms"
    assert overtakes[600] == 0, summary
    assert overtakes[1188] <= 12, summary
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1200,)
    conn.close()


def test_a_writer_that_waits_too_long_fails_as_sqlite_would_and_the_next_gets_in(tmp_path, monkeypatch):
    """Past SQLite's busy timeout a writer gives up with "database is locked", as SQLite's own wait
    did; the turn it was still waiting for is let go when granted, so the writers after it are not
    locked out. Nested transactions in one thread take the lock once."""
    from poggio.storage.db import WriterLock

    path = _database(tmp_path)
    db = bind(f"sqlite:///{path}")
    try:
        monkeypatch.setattr(WriterLock.of(db), "timeout", 0.3)
        holder = _writer(path, 1, 2.0, 0)  # holds the lock for two seconds
        assert holder.stdout.readline().strip() == "writing"
        asked = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"), database.connection_context(), writing():
            pass
        assert 0.25 < time.monotonic() - asked < 1.5
        holder.communicate(timeout=30)
        asked = time.monotonic()
        with database.connection_context():
            for i in range(3):
                with writing(), writing():
                    database.execute_sql("INSERT INTO t (x) VALUES (?)", (i,))
            assert database.execute_sql("SELECT count(*) FROM t").fetchone() == (4,)
        assert time.monotonic() - asked < 0.5
    finally:
        db.close_all()


def test_a_forked_child_takes_its_own_turn(tmp_path):
    """A child forked while another thread of its parent writes has its own lock: it waits for the
    parent's write to end, then writes. The lock of the process it was copied from stays locked
    forever in the child (the thread holding it was not copied), and the copied file description
    would share the parent's flock instead of waiting for it."""
    import threading

    from poggio.storage.db import WriterLock

    db = bind(f"sqlite:///{_database(tmp_path)}")
    try:
        lock = WriterLock.of(db)
        held, release = threading.Event(), threading.Event()

        def parent_writes():
            with lock.held():
                held.set()
                release.wait(10)

        writer = threading.Thread(target=parent_writes)
        writer.start()
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: only the lock, no SQLite connection copied from the parent
            code = 1
            try:
                child = WriterLock.of(db)
                child.timeout = 5
                asked = time.monotonic()
                with child.held():
                    code = 0 if time.monotonic() - asked > 0.3 else 2  # it waited for the parent
            finally:
                os._exit(code)
        time.sleep(0.5)
        release.set()
        writer.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        db.close_all()


def test_the_lock_file_has_the_database_files_permissions(tmp_path):
    """Processes of other users that may write the database (a group) may take the lock as well."""
    path = _database(tmp_path)
    os.chmod(path, 0o660)
    db = bind(f"sqlite:///{path}")
    mask = os.umask(0o002)
    try:
        with database.connection_context(), writing():
            database.execute_sql("INSERT INTO t (x) VALUES (1)")
    finally:
        os.umask(mask)
        db.close_all()
    assert os.stat(path + "-writer").st_mode & 0o777 == 0o660
