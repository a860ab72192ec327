"""``poggio up``: the portal and the MCP server as children of one supervisor that stops them both.

The supervisor owns its children's lives:

- They run in a process group of their own, so a terminal's Ctrl-C (SIGINT to the foreground group)
  reaches the supervisor alone, which then stops each child the way that child stops fastest. A shell
  starts a background job with SIGINT ignored and a child inherits that; Python then installs no
  ``KeyboardInterrupt`` handler. The supervisor installs its own handlers for SIGINT, SIGTERM and SIGHUP,
  whatever it inherited, and its children start with SIGINT at its default.
- On Linux each child asks the kernel for a parent-death signal (``prctl(PR_SET_PDEATHSIG)``): when the
  supervisor is killed outright (SIGKILL, out of memory), its servers are signalled too, so none outlives
  it.
- gunicorn (the portal) is stopped with SIGINT, its quick shutdown: its workers exit at once (see
  :mod:`portal.gunicorn_conf`), idle keep-alive and preconnected browser sockets included. uvicorn (the
  MCP server) is stopped with SIGTERM: it closes idle connections, finishes requests in flight and
  flushes the usage counters it holds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def child_setup(death_signal: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a supervised child: SIGINT back to its default, and ``death_signal`` sent to
    the child when its parent dies. Looked up before the fork: the function runs in the child."""
    prctl = _prctl()
    parent = os.getpid()

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            if os.getppid() != parent:  # the parent died between the fork and prctl
                os._exit(1)

    return setup


@dataclass
class Child:
    """One supervised server: its name for messages, how it is started and how it is stopped."""

    name: str
    argv: list[str]
    stop_signal: int
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, process_group=0, preexec_fn=child_setup(self.stop_signal))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.running():
            self.proc.send_signal(self.stop_signal)

    def kill(self) -> None:
        if self.proc is not None and self.running():
            self.proc.kill()


class Supervisor:
    """Starts the children, waits for a stop signal or for a child to exit, and stops them all within
    ``grace`` seconds (then kills what is left). :meth:`run` returns the exit status: 0 for a stop
    asked by a signal, 1 when a child exited on its own or had to be killed."""

    def __init__(self, children: list[Child], grace: float = 5.0, echo: Callable[[str], None] = print):
        self.children, self.grace, self.echo = children, grace, echo
        self.stop_asked: int | None = None

    def _on_signal(self, signum, _frame) -> None:
        if self.stop_asked is not None:  # asked twice: no more waiting
            for child in self.children:
                child.kill()
        self.stop_asked = signum

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for child in self.children:
                if self.stop_asked is None:
                    child.start()
            while self.stop_asked is None and all(c.running() for c in self.children):
                time.sleep(0.1)
            died = [(c, c.proc) for c in self.children if c.proc is not None and c.proc.poll() is not None]
            for child in self.children:
                child.stop()
            killed = self._wait_or_kill()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.stop_asked is None:
            for child, proc in died:
                self.echo(f"The {child.name} exited with status {proc.returncode}; stopped the others.")
            return 1
        return 1 if killed else 0

    def _wait_or_kill(self) -> list[Child]:
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(c.running() for c in self.children):
            time.sleep(0.05)
        killed = [c for c in self.children if c.running()]
        for child in killed:
            self.echo(f"The {child.name} did not stop within {self.grace:g} s: killed.")
            child.kill()
        for child in self.children:
            if child.proc is not None:
                child.proc.wait()
        return killed
