"""Prometheus metrics of the MCP server, served at ``/metrics`` to holders of ``POGGIO_METRICS_TOKEN``.

With several workers (``uvicorn --workers N``, gunicorn) every worker writes its numbers to files in
one folder (prometheus_client's multiprocess mode) and whichever worker answers a scrape reports the
sum over all of them: the whole server, not one random worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from poggio.adapters.prometheus import use_multiprocess_values

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def server_pid() -> int | None:
    """The pid of the process that started this worker, when this process is one of several
    workers of one server; None when it serves alone."""
    parent = multiprocessing.parent_process()  # uvicorn --workers N spawns its workers
    if parent is not None and parent.pid:
        return parent.pid
    if "gunicorn.workers" in sys.modules:  # gunicorn forks its workers from the arbiter
        return os.getppid()
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess_dir(instance_path: Path) -> str | None:
    """The folder this server's workers share their metrics in (created; folders of servers no
    longer running are removed), ``PROMETHEUS_MULTIPROC_DIR`` if the operator set one, or None for
    a single process."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    pid = server_pid()
    if pid is None:
        return None
    root = instance_path / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and int(old.name) != pid and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    path = root / str(pid)
    path.mkdir(exist_ok=True)
    return str(path)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, tool_names: list[str], multiprocess: str | None = None) -> None:
        self.multiprocess = multiprocess
        if multiprocess:
            os.environ[ENV] = multiprocess
            # prometheus_client picks its value class once, at import, from the environment; the
            # folder is known only now. tests/test_workers.py fails if this stops taking effect.
            use_multiprocess_values()
        self.registry = CollectorRegistry()
        self.known_labels = set(tool_names) | {
            "initialize",
            "ping",
            "tools/list",
            "server/discover",
            "tools/call:unknown",
        }
        self.requests = Counter(
            "poggio_mcp_requests",
            "Authenticated MCP requests by method or tool and outcome",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "poggio_mcp_auth_failures", "Requests refused before MCP handling", ["reason"], registry=self.registry
        )
        self.tool_seconds = Histogram(
            "poggio_mcp_tool_seconds",
            "Time spent in tools",
            ["tool"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.lean = Counter(
            "poggio_mcp_lean",
            "POSTs to /mcp answered by the lean path (served) or handed to the SDK (declined)",
            ["outcome"],
            registry=self.registry,
        )
        self._request_children: dict = {}
        self.usage_pending = Gauge(
            "poggio_usage_pending_calls",
            "Calls counted but not yet written",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def request(self, label: str, ok: bool):
        """The counter of requests under ``label`` (a known one, else ``other``) and their outcome;
        kept once made (``labels()`` takes a lock and checks its arguments on every call)."""
        key = (label, ok)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(label if label in self.known_labels else "other", "ok" if ok else "error")
            if len(self._request_children) < 1024:
                self._request_children[key] = child
        return child

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess)
        return generate_latest(registry)

    def close(self) -> None:
        """This worker is stopping: its live gauges no longer count."""
        if self.multiprocess:
            mark_process_dead(os.getpid(), self.multiprocess)
