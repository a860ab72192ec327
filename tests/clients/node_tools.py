"""Drive real third-party MCP clients (Node 22) against a server over Streamable HTTP.

The clients and Node 22 itself come from the npm registry, pinned by ``scripts/node/package-lock.json``
and installed into ``build/node`` by ``scripts/node/ensure-node.sh`` (which :func:`ensure_node_tools`
runs on first use; it takes ~15 s cold and a few ms when cached). Nothing here downloads at run time.

* :func:`run_inspector_cli` — ``@modelcontextprotocol/inspector --cli`` for one method.
* :func:`run_conformance` — ``@modelcontextprotocol/conformance server`` with a bearer token
  injected by ``conformance/auth-preload.mjs`` (the suite itself sends none).
* :class:`McpRemote` — ``mcp-remote`` (stdio <-> Streamable HTTP bridge used by desktop hosts),
  talked to over its stdin/stdout as a host would.

Every process gets a throwaway HOME (and XDG dirs), so nothing reads or writes the user's
``~/.mcp-inspector`` or ``~/.mcp-auth``, and secrets stay in memory.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = ROOT / "scripts" / "node" / "ensure-node.sh"
NODE_DIR = Path(os.environ.get("POGGIO_NODE_DIR", ROOT / "build" / "node"))
AUTH_PRELOAD = Path(__file__).resolve().parent / "conformance" / "auth-preload.mjs"
# The commands the client pages of the documentation show (included from these files): the tests run them.
INSPECTOR_CLI_EXAMPLE = ROOT / "examples" / "clients" / "inspector-cli.sh"
DESKTOP_CONFIG_EXAMPLE = ROOT / "examples" / "clients" / "claude_desktop_config.json"
EXAMPLE_URL = "http://127.0.0.1:8001/mcp"
EXAMPLE_TOKEN = "pgo_..."

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NodeToolsError(RuntimeError):
    """Node 22 or one of the client tools is not available."""


# --------------------------------------------------------------------------------------------- setup
@functools.lru_cache(maxsize=1)
def ensure_node_tools() -> Path:
    """Run ``ensure-node.sh`` once per process (idempotent, fast when cached); return Node 22's bin dir."""
    proc = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "POGGIO_NODE_DIR": str(NODE_DIR)},
        timeout=900,
    )
    if proc.returncode != 0:
        raise NodeToolsError(f"{ENSURE_SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    if not (bin_dir / "node").is_file():
        raise NodeToolsError(f"{ENSURE_SCRIPT} printed {bin_dir}, which has no node binary")
    return bin_dir


def tool_script(name: str) -> Path:
    """The JS entry point behind ``node_modules/.bin/<name>`` (run it with Node 22 explicitly)."""
    link = NODE_DIR / "node_modules" / ".bin" / name
    if not link.exists():
        raise NodeToolsError(f"{link} is missing: run `make node-tools` (bash {ENSURE_SCRIPT})")
    return link.resolve()


def node_env(home: str | os.PathLike[str] | None = None) -> tuple[str, dict[str, str]]:
    """(path of the Node 22 binary, environment for a client process).

    The environment is this process's, with PATH led by Node 22's bin dir (so ``#!/usr/bin/env node``
    finds Node 22, not the system Node 20), HOME and the XDG dirs in ``home`` (a fresh temp dir when
    not given), ``MCP_INSPECTOR_SECRET_STORE=memory`` (no keychain, no secrets.json),
    ``MCP_REMOTE_CONFIG_DIR`` inside that HOME, and no inherited NODE_OPTIONS.
    """
    bin_dir = ensure_node_tools()
    home_dir = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="poggio-node-home-"))
    home_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_OPTIONS", "NODE_PATH")}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(home_dir),
            "XDG_CONFIG_HOME": str(home_dir / ".config"),
            "XDG_DATA_HOME": str(home_dir / ".local" / "share"),
            "XDG_STATE_HOME": str(home_dir / ".local" / "state"),
            "XDG_CACHE_HOME": str(home_dir / ".cache"),
            "MCP_INSPECTOR_SECRET_STORE": "memory",
            "MCP_REMOTE_CONFIG_DIR": str(home_dir / ".mcp-auth"),
            "MCP_AUTO_OPEN_ENABLED": "false",  # never try to open a browser for OAuth
            "NO_COLOR": "1",
            "npm_config_update_notifier": "false",
        }
    )
    return str(bin_dir / "node"), env


# ------------------------------------------------------------------------------------------ inspector
def documented_inspector_args(url: str, method: str, token: str | None) -> tuple[list[str], list[str]]:
    """The Inspector CLI arguments of ``examples/clients/inspector-cli.sh`` (after ``npx PACKAGE``) for
    this server, method and token: (everything before ``--header``, the header arguments)."""
    text = "\n".join(line for line in INSPECTOR_CLI_EXAMPLE.read_text().splitlines() if not line.startswith("#"))
    argv = shlex.split(text.replace("\\\n", " "))
    assert argv[:2] == ["npx", "@modelcontextprotocol/inspector"], argv
    args = [url if a == EXAMPLE_URL else a for a in argv[2:]]
    args[args.index("--method") + 1] = method
    at = args.index("--header")
    header = [a.replace(EXAMPLE_TOKEN, token) for a in args[at:]] if token is not None else []
    return args[:at], header


def documented_desktop_bridge(url: str, token: str) -> tuple[list[str], dict[str, str]]:
    """The mcp-remote arguments (after ``mcp-remote``) and environment of
    ``examples/clients/claude_desktop_config.json`` for this server and token."""
    server = json.loads(DESKTOP_CONFIG_EXAMPLE.read_text())["mcpServers"]["poggio"]
    assert server["command"] == "npx" and server["args"][0] == "mcp-remote", server
    args = [url if a == EXAMPLE_URL else a for a in server["args"][1:]]
    env = {k: v.replace(EXAMPLE_TOKEN, token) for k, v in server["env"].items()}
    return args, env


def run_inspector_cli(
    url: str,
    token: str | None,
    method: str,
    tool_name: str | None = None,
    tool_args: dict[str, Any] | None = None,
    *,
    extra_args: Sequence[str] = (),
    output_format: str = "json",
    timeout: float = 60,
    home: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mcp-inspector --cli <url> --transport http --method ... --header "Authorization: Bearer ..."``.

    With ``output_format="json"`` (default) stdout is one object ``{"result": ...}`` on success and
    stderr one ``{"error": {"code", "message", ...}}`` on failure. Exit codes (Inspector 2.12):
    0 ok, 1 usage/other error, 3 auth_required (401/403), 4 unreachable, 5 tool error
    (``isError: true`` or unknown tool). ``tool_args`` go verbatim as ``--tool-args-json``.
    ``--header`` is variadic, so it comes last: nothing after it may be taken for a header.
    """
    node, env = node_env(home)
    documented, header = documented_inspector_args(url, method, token)
    cmd = [node, str(tool_script("mcp-inspector")), *documented, "--stored-auth-only"]
    if output_format:
        cmd += ["--format", output_format]
    if tool_name is not None:
        cmd += ["--tool-name", tool_name]
    if tool_args is not None:
        cmd += ["--tool-args-json", json.dumps(tool_args)]
    cmd += list(extra_args)
    cmd += header
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL, cwd=env["HOME"]
    )


# ---------------------------------------------------------------------------------------- conformance
_SUMMARY_LINE = re.compile(r"^[✓✗] (?P<name>\S+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$")
_TOTAL_LINE = re.compile(r"^Total: (?P<passed>\d+) passed, (?P<failed>\d+) failed$")
_RESULT_DIR = re.compile(r"^server-(?P<name>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$")


def _read_checks(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for d in sorted(out_dir.iterdir()):
        m = _RESULT_DIR.match(d.name)
        if m and (d / "checks.json").is_file():
            found[m["name"]] = json.loads((d / "checks.json").read_text())
    return found


def _scenario_result(checks: list[dict[str, Any]]) -> dict[str, Any]:
    count = lambda status: sum(1 for c in checks if c.get("status") == status)  # noqa: E731
    failed, warnings = count("FAILURE"), count("WARNING")
    return {
        "passed": count("SUCCESS"),
        "failed": failed,
        "warnings": warnings,
        "ok": failed == 0,  # the suite's exit-code rule: WARNINGs and INFOs do not fail a scenario
        "clean": failed == 0 and warnings == 0,  # the --expected-failures rule: a WARNING is a failure
        "checks": [
            {k: c.get(k) for k in ("id", "status", "description", "errorMessage")}
            for c in checks
            if c.get("status") != "INFO"
        ],
    }


def run_conformance(
    url: str,
    token: str | None,
    scenarios: Iterable[str] | None = None,
    *,
    suite: str | None = None,
    expected_failures: str | os.PathLike[str] | None = None,
    timeout: float = 300,
    home: str | os.PathLike[str] | None = None,
) -> tuple[int, str, dict[str, Any]]:
    """Run ``conformance server --url <url>`` with the bearer token injected; return (rc, output, summary).

    ``scenarios=None`` runs one suite (``suite``: "active" by default, or "all"/"pending"); otherwise
    each named scenario runs in its own process (the CLI takes one ``--scenario``) and rc is the
    worst. ``summary`` is ``{"passed", "failed", "warnings", "total_line", "results_dir",
    "scenarios": {name: {"passed", "failed", "warnings", "ok", "clean", "checks": [...]}}}``,
    counted from each scenario's checks.json exactly as the suite counts: ``ok`` = no FAILURE (what
    its exit code uses without a baseline), ``clean`` = no FAILURE and no WARNING (what
    ``--expected-failures`` uses: there a WARNING-only scenario is an unexpected failure).
    ``total_line`` is the suite's own closing line, ``Total: N passed, M failed`` (suite runs only).
    Output is stdout+stderr with ANSI colours removed.
    """
    node, env = node_env(home)
    work = Path(env["HOME"]) / "conformance"
    work.mkdir(parents=True, exist_ok=True)
    env["NODE_OPTIONS"] = f"--import={AUTH_PRELOAD.as_uri()}"  # a file: URL survives spaces in the path
    env["POGGIO_TARGET_URL"] = url
    if token is not None:
        env["POGGIO_TOKEN"] = token
    base = [node, str(tool_script("conformance")), "server", "--url", url]
    if expected_failures is not None:
        base += ["--expected-failures", str(Path(expected_failures).resolve())]

    runs: list[list[str]] = []
    if scenarios is None:
        runs.append(base + (["--suite", suite] if suite else []))
    else:
        runs += [base + ["--scenario", s] for s in scenarios]

    rc, outputs = 0, []
    out_dir = Path(tempfile.mkdtemp(prefix="results-", dir=work))
    deadline = time.monotonic() + timeout
    for cmd in runs:
        proc = subprocess.run(
            cmd + ["-o", str(out_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        rc = max(rc, proc.returncode)
        outputs.append(_ANSI.sub("", proc.stdout + proc.stderr))
    output = "\n".join(outputs)

    per = {name: _scenario_result(checks) for name, checks in _read_checks(out_dir).items()}
    # A scenario that crashed before writing checks.json still shows in the suite's SUMMARY block.
    for line in output.splitlines():
        m = _SUMMARY_LINE.match(line.strip())
        if m and m["name"] not in per:
            per[m["name"]] = {
                "passed": int(m["passed"]),
                "failed": int(m["failed"]),
                "warnings": 0,
                "ok": m["failed"] == "0",
                "clean": m["failed"] == "0",
                "checks": [],
            }
    total = next((line.strip() for line in output.splitlines() if _TOTAL_LINE.match(line.strip())), None)
    summary = {
        "passed": sum(r["passed"] for r in per.values()),
        "failed": sum(r["failed"] for r in per.values()),
        "warnings": sum(r["warnings"] for r in per.values()),
        "total_line": total,
        "scenarios": per,
        "results_dir": str(out_dir),
    }
    return rc, output, summary


# ----------------------------------------------------------------------------------------- mcp-remote
class McpRemoteError(RuntimeError):
    pass


class McpRemote:
    """``mcp-remote <url> --header "Authorization: Bearer <token>" --transport http-only`` over stdio.

    ::

        with McpRemote(url, token) as mr:
            init = mr.initialize()
            tools = mr.request("tools/list")["result"]["tools"]
            result = mr.call_tool("echo", {"text": "hi"})["result"]

    Messages are newline-delimited JSON-RPC on stdin/stdout. mcp-remote logs a lot on stderr
    (``[pid] ...`` lines, the full initialize request); it is drained in the background and kept in
    :attr:`stderr` for failure messages. ``header_via_env=True`` runs it as
    ``examples/clients/claude_desktop_config.json`` says, the header as ``Authorization:${POGGIO_AUTH}``,
    which mcp-remote expands from its environment (its documented workaround for hosts that mangle
    spaces in args; also keeps the token out of ``ps``).
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        header_via_env: bool = False,
        extra_args: Sequence[str] = (),
        home: str | os.PathLike[str] | None = None,
        default_timeout: float = 30,
    ):
        self.url, self.token = url, token
        self.header_via_env = header_via_env
        self.extra_args = list(extra_args)
        self.home = home
        self.default_timeout = default_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.notifications: list[dict[str, Any]] = []  # server->client messages that are not our responses
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._pending: dict[Any, dict[str, Any]] = {}
        self._next_id = 0

    # -- lifecycle
    def __enter__(self) -> McpRemote:
        node, env = node_env(self.home)
        cmd = [node, str(tool_script("mcp-remote"))]
        if self.token is not None and self.header_via_env:
            args, documented_env = documented_desktop_bridge(self.url, self.token)
            env.update(documented_env)
            cmd += [*args, *self.extra_args]
        else:
            cmd += [self.url]
            if self.token is not None:
                cmd += ["--header", f"Authorization: Bearer {self.token}"]
            cmd += ["--transport", "http-only", *self.extra_args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=env["HOME"],
        )
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5) -> int | None:
        """Close stdin (mcp-remote then shuts down by itself, exit 0); kill it if it lingers."""
        if self.proc is None:
            return None
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()

    def _pump_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self._stdout.put(line)
        self._stdout.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    # -- messages
    def send(self, message: dict[str, Any]) -> None:
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise McpRemoteError(f"mcp-remote is gone (exit {self.proc.poll()}):\n{self.stderr[-4000:]}") from exc

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message from mcp-remote's stdout, or None on timeout. Non-JSON lines are skipped."""
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._stdout.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._stdout.put(None)  # stay at EOF for later callers
                time.sleep(0.05)
                raise McpRemoteError(
                    f"mcp-remote exited (code {self.proc.poll() if self.proc else None}):\n{self.stderr[-4000:]}"
                )
            line = line.strip()
            if not line:
                continue
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a request and wait for the response with its id (the whole JSON-RPC message)."""
        self._next_id += 1
        rid = self._next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while rid not in self._pending:
            left = deadline - time.monotonic()
            got = self.recv(left) if left > 0 else None
            if got is None:
                raise McpRemoteError(
                    f"no response to {method} (id {rid}) within the timeout; stderr:\n{self.stderr[-4000:]}"
                )
            if "id" in got and ("result" in got or "error" in got):
                self._pending[got["id"]] = got
            else:
                self.notifications.append(got)
        return self._pending.pop(rid)

    def initialize(
        self, protocol_version: str = "2025-06-18", client_name: str = "poggio-tests", timeout: float | None = None
    ) -> dict[str, Any]:
        """initialize + notifications/initialized; returns the initialize response message."""
        resp = self.request(
            "initialize",
            {
                "protocolVersion": protocol_version,
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": "0"},
            },
            timeout=timeout,
        )
        self.notify("notifications/initialized")
        return resp

    def list_tools(self, timeout: float | None = None) -> dict[str, Any]:
        return self.request("tools/list", {}, timeout=timeout)

    def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}}, timeout=timeout)
