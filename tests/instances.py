"""Test instances on SQLite or PostgreSQL, and real server processes.

PostgreSQL is the server at ``POGGIO_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
each test session works in a schema of its own, dropped at the end. Redis is the server at
``POGGIO_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Tests that need either carry the
``postgres`` / ``redis`` marker (the PostgreSQL half of a backend parametrisation too, through
``BACKENDS``), so ``make test-fast`` can leave them out; when a service is unreachable its tests
fail, they do not skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg2
import pytest
from playhouse.pool import PooledDatabase

from poggio.storage.db import bind, database

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("POGGIO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("POGGIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# For ``params=`` and ``parametrize``: the PostgreSQL case carries the ``postgres`` marker.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Instance:
    """One Poggio installation for a test: its folder, database URL and environment."""

    path: Path
    database_url: str
    backend: str
    env: dict[str, str] = field(default_factory=dict)
    pg_schema: str | None = None

    def activate(self):
        os.environ.update(self.env)
        db = bind(self.database_url)
        return db


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def _pg_admin(sql: str) -> None:
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def make_instance(tmp: Path, backend: str, extra_env: dict[str, str] | None = None) -> Instance:
    tmp.mkdir(parents=True, exist_ok=True)
    schema = None
    if backend == "postgres":
        schema = f"poggio_test_{secrets.token_hex(4)}"
        try:
            _pg_admin(f"CREATE SCHEMA {schema}")
        except psycopg2.OperationalError as exc:
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
        url = _pg_schema_url(schema)
    else:
        url = f"sqlite:///{tmp / 'poggio.db'}"
    env = {
        "POGGIO_INSTANCE_PATH": str(tmp),
        "POGGIO_DATABASE_URL": url,
        "POGGIO_SECRET_KEY": "test-secret-" + secrets.token_hex(8),
        "POGGIO_USAGE_FLUSH_SECONDS": "0.2",
        **(extra_env or {}),
    }
    return Instance(tmp, url, backend, env, schema)


@contextlib.contextmanager
def postgres_demo(tmp: Path, monkeypatch, accounts: int):
    """A PostgreSQL instance with the schema and a demo workspace of ``accounts`` accounts, bound in
    this process and its environment: yields the workspace, inside a connection."""
    from poggio.commands import demo
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import upgrade

    inst = make_instance(tmp, "postgres")
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    inst.activate()
    try:
        with database.connection_context():
            upgrade(PackRegistry.load())
            ws = demo.build(PackRegistry.load(), "acme", accounts=accounts).workspace
        with database.connection_context():
            yield ws
    finally:
        drop_instance(inst)


def round_trips(monkeypatch) -> list:
    """What each PostgreSQL round trip sends from now on, one entry per trip (:class:`poggio.storage.db.HoldingCursor`):
    a statement (with whatever was held ahead of it), held statements sent alone (ahead of
    ``executemany`` or ``COPY``), a ``COPY``."""
    from poggio.storage.db import HoldingCursor

    sent: list = []
    execute, send_held, copy = HoldingCursor.execute, HoldingCursor._send_held, HoldingCursor.copy_expert

    def counted_execute(self, query, vars=None):
        sent.append(query)
        return execute(self, query, vars)

    def counted_send_held(self):
        if self.connection.held:
            sent.append(b";\n".join(self.connection.held))
        send_held(self)

    def counted_copy(self, sql, file, size=8192):
        result = copy(self, sql, file, size)  # its held statements first, through counted_send_held
        sent.append(sql)
        return result

    monkeypatch.setattr(HoldingCursor, "execute", counted_execute)
    monkeypatch.setattr(HoldingCursor, "_send_held", counted_send_held)
    monkeypatch.setattr(HoldingCursor, "copy_expert", counted_copy)
    return sent


def drop_instance(instance: Instance) -> None:
    if instance.backend == "postgres" and instance.pg_schema:
        if isinstance(database.obj, PooledDatabase):
            database.obj.close_all()
        _pg_admin(f"DROP SCHEMA IF EXISTS {instance.pg_schema} CASCADE")


class _ServiceProcess:
    """A Poggio process started with ``argv`` in the repository root, its output in a log file in the
    instance folder, ready once ``health`` answers 200."""

    what = "process"

    def _start(self, argv: list[str], env: dict[str, str], log_name: str, health: str) -> None:
        self.log_path = self.instance.path / log_name
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._health = health
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # a server that never became ready is no fixture's to stop: stop it here
            raise

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self._health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.what} did not become ready:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class ServerProcess(_ServiceProcess):
    """``poggio``'s MCP server (uvicorn) in a subprocess, started with the argv ``poggio mcp`` builds
    (proxy headers, server header...), with a shorter shutdown and info logs for the tests (uvicorn
    takes the last value of a repeated option)."""

    what = "MCP server"

    def __init__(
        self, instance: Instance, port: int | None = None, extra_env: dict[str, str] | None = None, workers: int = 1
    ):
        from poggio.commands.cli import _mcp_argv
        from poggio.settings import load_settings

        self.instance = instance
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.url}/mcp"
        env = {**os.environ, **instance.env, "POGGIO_MCP_PUBLIC_URL": self.mcp_url, **(extra_env or {})}
        argv = _mcp_argv(load_settings(env), "127.0.0.1", self.port, workers)
        self._start(
            [*argv, "--timeout-graceful-shutdown", "5", "--log-level", "info"],
            env,
            f"mcp-{self.port}.log",
            f"{self.url}/readyz",
        )


class PortalProcess(_ServiceProcess):
    """The portal (gunicorn, through ``poggio portal``) in a subprocess, as production runs it. It shows
    ``mcp_url`` and issues OAuth tokens for it; its own URL is the OAuth issuer."""

    what = "portal"

    def __init__(
        self,
        instance: Instance,
        mcp_url: str | None = None,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
    ):
        self.instance = instance
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **instance.env,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            "POGGIO_PORTAL_PUBLIC_URL": self.url,
            **({"POGGIO_MCP_PUBLIC_URL": mcp_url} if mcp_url else {}),
            **(extra_env or {}),
        }
        self._start(
            [
                sys.executable,
                "-m",
                "poggio",
                "portal",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env,
            f"portal-{self.port}.log",
            f"{self.url}/healthz",
        )
