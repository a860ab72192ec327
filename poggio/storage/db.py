"""The one database both processes share: binding from a URL, the model base class, the clock.

``POGGIO_DATABASE_URL`` is parsed by :mod:`playhouse.db_url`. Plain ``sqlite://`` and
``postgresql://`` URLs are served by peewee's pooled classes so that worker threads reuse
connections instead of opening one per request; SQLite runs in WAL mode with a busy timeout so the
portal and the MCP server can write at the same time.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from peewee import (
    AutoField,
    BaseQuery,
    DatabaseError,
    DatabaseProxy,
    Model,
    ModelSelect,
    OperationalError,
    SqliteDatabase,
    fn,
)
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from poggio.errors import PoggioError

database = DatabaseProxy()
log = logging.getLogger(__name__)

SQLITE_PRAGMAS: dict[str, str | int] = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "foreign_keys": 1,
    "cache_size": -32_000,
}

# PostgreSQL sessions plan for data in memory or on SSD: random_page_cost 1.1, the usual setting for
# both (the server's default of 4 is for spinning disks). With 4, PostgreSQL answered a search page by
# reading and sorting every match instead of walking the word index to the first 21 (figures in
# benchmarks/README.md). Given as a connection option, it costs nothing per request; a `-c` in the URL's own
# `options` comes after it and wins.
POSTGRES_OPTIONS = "-c random_page_cost=1.1"

_POOLED = {"sqlite": "sqlite+pool", "postgres": "postgresql+pool", "postgresql": "postgresql+pool"}


# A pooled PostgreSQL connection back in the pool for longer than this (seconds) is asked whether it
# still works before it is handed out again; one back for less is handed out as it is.
PING_AFTER = 5.0


class HoldingConnection(PgConnection):
    """A psycopg2 connection that holds statements back and sends them ahead of the next one, in the
    same round trip: one query string of several statements, which PostgreSQL runs in order (the
    cursor then holds the last one's result). :class:`PooledPostgres` holds a transaction's ``BEGIN``
    this way, and :func:`write_later` the writes whose result nobody reads, so a write transaction
    costs fewer round trips: while it holds a row lock, each one is time every other writer of that
    row waits. The held statements are already bound (``mogrify``): nothing is left to interpolate."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held: list[bytes] = []
        self.cursor_factory = HoldingCursor


class HoldingCursor(PgCursor):
    """Sends its connection's held statements ahead of what it executes (see :class:`HoldingConnection`)."""

    connection: HoldingConnection

    def execute(self, query, vars=None):
        if not self.connection.held:
            return super().execute(query, vars)
        # with no vars psycopg2 interpolates nothing (a "%" stays), with () it still turns "%%" into "%"
        statement = self.mogrify(query, vars) if vars is not None else self.mogrify(query)
        return super().execute(self._take_held() + b";\n" + statement)

    def _take_held(self) -> bytes:
        held = self.connection.held
        ahead = b";\n".join(held)  # a newline: a statement may end in a -- comment
        held.clear()
        return ahead

    def _send_held(self) -> None:
        if self.connection.held:
            super().execute(self._take_held())

    def executemany(self, query, vars_list):
        self._send_held()
        return super().executemany(query, vars_list)

    def copy_expert(self, sql, file, size=8192):
        self._send_held()
        return super().copy_expert(sql, file, size)


class PooledPostgres(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool without a round trip at every check-out.

    peewee asks the server (``SELECT 1``) whether each connection it hands out still works, and
    holds the database's lock meanwhile: under load that is one more round trip per request (two for
    an MCP tool call: the token, then the tool) with every worker thread queued behind it. Here a
    connection that came back to the pool less than :data:`PING_AFTER` seconds ago, idle and not
    known to psycopg2 as broken, is handed out as it is; one that sat idle longer (a server restart
    or an idle timeout may have cut it meanwhile) is still asked. peewee's pool calls ``_is_closed``
    at check-out, ``_close`` at check-in and ``_close_raw`` when it discards a connection: pinned by
    ``tests/test_db.py``, which fails if a check-out asks the server again."""

    def __init__(self, *args, **kwargs):
        self._returned: dict[int, float] = {}  # id(connection) -> when it came back to the pool
        kwargs.setdefault("connection_factory", HoldingConnection)
        super().__init__(*args, **kwargs)

    # A transaction's BEGIN goes with its first statement (HoldingConnection): one round trip fewer.
    def begin(self, isolation_level=None):
        conn = self.connection()
        if isolation_level is not None or self._isolation_level or not isinstance(conn, HoldingConnection):
            return super().begin(isolation_level)
        conn.held.append(b"BEGIN")

    def commit(self):
        conn = self.connection()
        if isinstance(conn, HoldingConnection) and conn.held == [b"BEGIN"]:  # nothing sent: nothing to commit
            conn.held.clear()
            return
        super().commit()  # sends what is held ahead of the COMMIT

    def rollback(self):
        conn = self.connection()
        if isinstance(conn, HoldingConnection) and conn.held:
            started = conn.held[0] != b"BEGIN"  # else the server never saw this transaction
            conn.held.clear()  # writes held back are rolled back unsent
            if not started:
                return
        super().rollback()

    def _is_closed(self, conn) -> bool:
        returned = self._returned.get(id(conn))
        if (
            returned is not None
            and time.monotonic() - returned < PING_AFTER
            and not conn.closed
            and conn.get_transaction_status() == TRANSACTION_STATUS_IDLE
        ):
            return False
        return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        self._returned[id(conn)] = time.monotonic()
        if isinstance(conn, HoldingConnection):
            conn.held.clear()  # a transaction never ended: what it held is not the next user's
        return super()._close(conn, close_conn)

    def _close_raw(self, conn):
        self._returned.pop(id(conn), None)
        return super()._close_raw(conn)


# the largest id a row has or refers to: ids are PostgreSQL serial columns (32-bit); a larger number
# names no row, and the database would refuse it (SQLite past 64 bits) rather than find nothing
MAX_ID = 2**31 - 1


def parse_id(text) -> int | None:
    """A row id written in text (a form field, a URL parameter, a CLI argument): plain ASCII digits
    from 1 to :data:`MAX_ID`, else None (which names no row)."""
    text = str(text)
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def utcnow() -> dt.datetime:
    """Naive UTC, the one time representation stored in the database."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class BaseModel(Model):
    id: AutoField[int]  # for the type checker: the primary key peewee adds to every model

    class Meta:
        database = database
        legacy_table_names = False


def open_database(url: str, *, max_connections: int = 32, statement_timeout: float | None = None):
    """A peewee database for ``url``, pooled, with SQLite tuned for concurrent processes.

    ``statement_timeout`` (seconds) makes PostgreSQL cancel any statement that runs longer; SQLite
    has no such setting, :func:`statement_deadline` does it there per call."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    scheme = _POOLED.get(scheme, scheme)
    params: dict[str, object] = {}
    if scheme.endswith("+pool"):
        params.update(max_connections=max_connections, stale_timeout=300, timeout=30)
    if scheme.startswith("postgres"):
        own = parse_qs(urlsplit(url).query).get("options", [])
        limit = [f"-c statement_timeout={round(statement_timeout * 1000)}"] if statement_timeout else []
        params["options"] = " ".join([POSTGRES_OPTIONS, *limit, *own])
    if scheme.startswith("sqlite"):
        params["pragmas"] = SQLITE_PRAGMAS
        # The pool hands a connection to one thread at a time, but not always the thread that opened it.
        params["check_same_thread"] = False
    if scheme == "postgresql+pool":
        kwargs = db_url.parse(f"{scheme}://{rest}")
        if not kwargs.get("database"):
            raise ValueError(f"{url!r} has no database name")
        return PooledPostgres(**{**kwargs, **params})
    return db_url.connect(f"{scheme}://{rest}", **params)


def bind(url: str, **kwargs):
    """Bind the shared proxy to the database at ``url`` and return it. The folder of a SQLite file is
    created here (:class:`DatabaseUnavailable` when it cannot be)."""
    _sqlite_folder(url)
    db = open_database(url, **kwargs)
    database.initialize(db)
    return db


class DatabaseUnavailable(PoggioError):
    """The database cannot be opened: the message says why and which setting to change, in one line."""


def shown_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (the instance folder, by default), as the database
    itself is created on first use."""
    parsed = urlsplit(url)
    name = parsed.path[1:]  # as playhouse.db_url reads it
    if not parsed.scheme.startswith("sqlite") or _in_memory(name):
        return
    folder = os.path.dirname(name)
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"Cannot create the folder {folder} for the SQLite database: {exc.strerror}. Set "
                "POGGIO_INSTANCE_PATH to a folder Poggio may write to, or POGGIO_DATABASE_URL."
            ) from None


def connect(url: str, **kwargs):
    """:func:`bind` the database at ``url`` and open a connection, or raise :class:`DatabaseUnavailable`
    with a one-line reason that names the setting to change (for commands and servers starting up)."""
    try:
        db = bind(url, **kwargs)
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except DatabaseUnavailable:
        raise
    except ValueError as exc:
        raise DatabaseUnavailable(f"POGGIO_DATABASE_URL is not usable: {exc}.") from None
    except (OperationalError, DatabaseError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"Cannot open the database {shown_url(url)}: {reason}. Check POGGIO_DATABASE_URL "
            "(and, for the default SQLite file, that POGGIO_INSTANCE_PATH is a folder Poggio may write to)."
        ) from None
    return db


def _in_memory(name: str) -> bool:
    """A SQLite database name that opens a database in memory, one per connection, not a file."""
    return name in ("", ":memory:") or name.startswith("file::memory")


class CommitWatcher:
    """Whether anything was committed to a SQLite database, by any connection of any process, since
    the last look: ``PRAGMA data_version`` on a connection of its own, which never writes and never
    holds a transaction open (the number changes when *another* connection commits). For caches
    of what the database says, which must not outlive a change."""

    def __init__(self, path: str):
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, db) -> CommitWatcher | None:
        """A watcher of ``db`` (a peewee database), or None where there is nothing to watch this
        way: PostgreSQL, or a SQLite database in memory (each connection has its own)."""
        if not isinstance(db, SqliteDatabase) or _in_memory(db.database):
            return None
        return cls(db.database)

    def version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self._conn.close()


def changed_at(previous: dt.datetime | None = None) -> dt.datetime:
    """A record's new ``updated_at``: naive UTC to the microsecond, always after ``previous``, so two
    changes never share a version and ``if_unmodified_since`` tells them apart."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if previous is not None and now <= previous:
        now = previous + dt.timedelta(microseconds=1)
    return now


Q = TypeVar("Q", bound="ModelSelect[Any]")


def for_update(query: Q, key: Any = None) -> Q:
    """``query`` locking the rows it reads of its model (not those of a table it joins) until the
    write transaction ends: ``SELECT ... FOR UPDATE OF`` on PostgreSQL; on SQLite :func:`writing`
    already holds the database's write lock.

    ``key`` (an integer expression naming the one row, e.g. ``slot("id")``), for a row the caller
    will change: on PostgreSQL the callers first queue for a transaction-level advisory lock on it,
    in the order they came. A row lock alone is not handed on in order once the row is changed:
    the waiters wait on the old version of the row, and a newcomer locks the new one at once."""
    if isinstance(database.obj, SqliteDatabase):
        return query
    if key is not None:
        table = query.model._meta.table_name
        query = query.where(fn.pg_advisory_xact_lock(fn.hashtext(table), key).is_null(False))
    return query.for_update(of=query.model)  # the rows of the model asked for, not of what it joins


def tuple_rows(query: BaseQuery) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query.tuples()``, typed as tuples (peewee's stubs type them as the query's model)."""
    return iter(query.tuples())


def dict_rows(query: BaseQuery) -> Iterator[dict[str, Any]]:
    """The rows of ``query.dicts()``, typed as dicts (peewee's stubs type them as the query's model)."""
    return iter(query.dicts())


def delete_in_batches(model, where, batch: int = 5000) -> int:
    """Delete ``model``'s rows matching ``where``, ``batch`` at a time, each batch its own short write
    transaction (a prune must not hold the write lock for long); returns how many went."""
    deleted = 0
    while True:
        with writing():
            doomed = model.select(model.id).where(where).limit(batch)
            count = model.delete().where(model.id.in_(doomed)).execute()
        deleted += count
        if count < batch:
            return deleted


def write_later(sql: str, params: Sequence[Any]) -> None:
    """Run a write whose result the caller does not need (no new id, no row count), in the caller's
    transaction. On PostgreSQL it is held back and sent with the transaction's next statement or
    its COMMIT, in the same round trip (:class:`HoldingConnection`); an error it raises then comes
    from that statement, and fails the transaction all the same. Outside a transaction, and on
    SQLite (no round trips), it runs at once."""
    conn = database.connection()
    if isinstance(conn, HoldingConnection) and database.in_transaction():
        with conn.cursor() as cursor:
            conn.held.append(cursor.mogrify(sql, params))
        return
    database.execute_sql(sql, params)


def writing() -> contextlib.AbstractContextManager[Any]:
    """A transaction that will write. On SQLite it takes the write lock up front (BEGIN IMMEDIATE),
    so it waits out the busy timeout instead of failing with "database is locked" when a read
    transaction would have to be upgraded while another process writes; and before that it waits
    its turn among the writers of every process on the file (:class:`WriterLock`)."""
    if isinstance(database.obj, SqliteDatabase):
        return _sqlite_writing(WriterLock.of(database.obj))
    return database.atomic()


class LockWait:
    """Whether the work of a call is waiting for the write lock at this moment (for a caller that
    may stop waiting for it, and must then say why: :data:`lock_wait`)."""

    waiting = False


# set by a caller that may give up on its work (a tool call's timeout): writing() notes in it
# while it waits for the write lock (the work runs in a copy of the caller's context)
lock_wait: contextvars.ContextVar[LockWait | None] = contextvars.ContextVar("poggio_lock_wait", default=None)


@contextlib.contextmanager
def _sqlite_writing(lock: WriterLock):
    wait = lock_wait.get()
    begun = False
    if wait is not None:
        wait.waiting = True
    try:
        with lock.held():
            try:
                with database.atomic("IMMEDIATE") as txn:
                    begun = True
                    if wait is not None:
                        wait.waiting = False
                    yield txn
            except OperationalError as exc:
                # BEGIN IMMEDIATE waits for another connection's write lock; a statement deadline
                # that ends the wait first makes it "interrupted": what held it up is the lock
                if not begun and str(exc) == "interrupted":
                    raise OperationalError("database is locked") from exc
                raise
    finally:
        if wait is not None and not begun:
            wait.waiting = False


class WriterLock:
    """One writer at a time among the threads and processes that write one SQLite file, handed on
    the moment it is free.

    SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps
    between tries (1, 2, 5 ... up to 100 ms) and lets a newcomer in before a writer that has slept
    for long: with two server processes writing, some calls waited most of a second. Here writers
    queue on a lock of the process, then on an advisory lock (``flock``) of a file beside the
    database, ``<database>-writer``: the kernel wakes the waiting process as soon as the holder lets
    go. SQLite's own lock stays what keeps the data safe; a writer that does not come through here
    (another program) still meets the others there. Re-entrant within a thread (a nested
    :func:`writing` is a savepoint). Waiting longer than SQLite's busy timeout fails as SQLite
    would ("database is locked"). A database in memory has no file: the lock of the process only.
    One per database object (its file closed when that goes); a forked child starts with none."""

    _all: weakref.WeakKeyDictionary[SqliteDatabase, WriterLock] = weakref.WeakKeyDictionary()
    _all_lock = threading.Lock()

    def __init__(self, path: str | None, timeout: float):
        self.path = path
        self.timeout = timeout
        self._threads = threading.Lock()
        self._local = threading.local()
        self._fd: int | None = None
        self._opened = False
        self._waiter: _FlockWaiter | None = None
        self._abandoned = 0  # waits given up whose flock may still be granted (then let go at once)
        self._count = threading.Lock()  # of _abandoned, changed by the waiting threads and the helper

    @classmethod
    def of(cls, db: SqliteDatabase) -> WriterLock:
        lock = cls._all.get(db)
        if lock is None:
            name = db.database
            # a file: URI is left to SQLite's lock alone (its path is not the name as written)
            path = None if _in_memory(name) or name.startswith("file:") else os.path.abspath(name)
            with cls._all_lock:
                lock = cls._all.setdefault(db, cls(path, int(SQLITE_PRAGMAS["busy_timeout"]) / 1000))
        return lock

    @classmethod
    def _forget_all(cls) -> None:  # in a forked child: the parent's locks and their holders are not its own
        cls._all = weakref.WeakKeyDictionary()
        cls._all_lock = threading.Lock()

    @contextlib.contextmanager
    def held(self):
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise OperationalError("database is locked")
        try:
            fd = self._file()
            if fd is not None:
                self._lock_file(fd, deadline)
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if not self._opened:
            self._opened = True
            try:  # read-only is enough for flock; created with the database's permissions, as SQLite makes its -wal
                mode = os.stat(self.path).st_mode & 0o666 if os.path.exists(self.path) else 0o644
                self._fd = os.open(self.path + "-writer", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, mode)
            except OSError:  # a folder this process may not write in: SQLite's lock alone, as before
                log.warning("no writer lock file beside %s; writers meet at SQLite's lock", self.path)
            else:
                weakref.finalize(self, os.close, self._fd)
        return self._fd

    def _lock_file(self, fd: int, deadline: float) -> None:
        """``flock`` with a time limit: tried at once, else waited for in a helper thread (a blocked
        ``flock`` cannot be interrupted); one given up on is let go by that thread as soon as it is
        granted, before the next wait it runs."""
        if not self._abandoned:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
        if self._waiter is None:
            self._waiter = _FlockWaiter()
        wait = self._waiter.lock(fd)
        try:
            wait.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            with self._count:
                self._abandoned += 1
            wait.add_done_callback(self._let_go)
            raise OperationalError("database is locked") from None

    def _let_go(self, wait) -> None:  # in the helper thread, before it takes the next wait
        if wait.exception() is None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        with self._count:
            self._abandoned -= 1


class _FlockWaiter:
    """One daemon thread that takes ``flock`` locks for the threads waiting with a time limit, one
    after the other (two waits on one file description at once would both be granted). A daemon:
    a wait that never ends does not keep the process from exiting."""

    def __init__(self):
        self._asked: queue.SimpleQueue[tuple[int, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="poggio-writer-lock", daemon=True).start()

    def lock(self, fd: int) -> Future:
        wait: Future = Future()
        self._asked.put((fd, wait))
        return wait

    def _run(self) -> None:
        while True:
            fd, wait = self._asked.get()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                wait.set_exception(exc)
            else:
                wait.set_result(None)  # runs a given-up wait's callback here, before the next


os.register_at_fork(after_in_child=WriterLock._forget_all)


def refresh_statistics() -> None:
    """Have PostgreSQL's planner count the rows of every table in Poggio's schema anew (``ANALYZE``),
    after a bulk write. Until autovacuum gets to it (up to a minute later, or never when it is
    turned off), the planner guesses from empty tables and can pick a wrong index: the look-up of an
    account by domain walked the workspace's accounts by industry instead of the domain index.
    ANALYZE reads a bounded sample of each table, so it costs little at any size. SQLite: nothing
    (its planner runs without statistics here, and the queries are written for that)."""
    if isinstance(database.obj, SqliteDatabase):
        return
    tables = [
        name
        for (name,) in database.execute_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    ]
    if tables:
        database.execute_sql("ANALYZE " + ", ".join(f'"{t}"' for t in tables))


@contextlib.contextmanager
def statement_deadline(seconds: float):
    """Stop the SQL of the current connection once ``seconds`` have passed: the statement running
    then fails with "interrupted". For work whose caller has stopped waiting (a tool call past its
    timeout), so its query does not run on for minutes holding a connection and a core. On SQLite a
    progress handler checks the clock every few thousand instructions; PostgreSQL sessions get
    ``statement_timeout`` from :func:`open_database` instead."""
    if not isinstance(database.obj, SqliteDatabase):
        yield
        return
    conn = database.connection()
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)
