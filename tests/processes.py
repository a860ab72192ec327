"""The suite's own child processes, read from ``/proc``: every process a test starts must be gone
when the session ends, on failure too.

The test process makes itself a *child subreaper* (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): a
process orphaned by one of its children (a server whose supervisor was killed) is re-parented to
the test process instead of to init, so it is still found here, and named, at the session's end."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children(pid: int) -> list[int]:
    """The living children of ``pid`` (not zombies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """The living descendants of ``pid``, children first."""
    found, queue = [], [pid]
    while queue:
        kids = children(queue.pop(0))
        found.extend(kids)
        queue.extend(kids)
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def reap(pids: list[int]) -> None:
    """Collect the exit status of those of ``pids`` that are this process's children and have ended
    (orphans re-parented here included), so they do not stay zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every process of ``pids`` has ended; returns those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        reap(pids)
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def leftovers(grace: float = 10.0) -> list[str]:
    """The processes this one started that are still running after ``grace`` seconds (time for those
    being stopped to finish): each named by its command line, then killed."""
    left = wait_gone(descendants(os.getpid()), grace)
    named = [f"pid {pid}: {command_line(pid)}" for pid in left]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(left, 5)
    return named
