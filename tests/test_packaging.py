"""Poggio installs like any Python application, and third-party packs install into it.

`pip wheel .` builds the wheel; a fresh virtual environment outside the repository gets it with its
dependencies from the package index (pip's cache makes later runs fast). There, with nothing of the
checkout on the path, `poggio db upgrade && poggio demo && poggio up` serves the portal (templates,
CSS, JavaScript, htmx) and the MCP server, with the instance folder under the current directory. The
example pack `examples/poggio-weather` and a pack made by `poggio pack new` are pip-installed from
their own folders into the same environment, pass their own tests, are listed by `poggio packs list`
and served by `poggio mcp` next to the built-in packs. One environment per test session.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from helpers import Mcp
from instances import ROOT, free_port

HTMX_SHA256 = "491955cd1810747d7d7b9ccb936400afb760e06d25d53e4572b64b6563b2784e"


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or of the test instance."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("POGGIO_", "VIRTUAL_ENV"))}
    return {**env, **extra}


def _run(*args, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(**extra), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT, cwd=out)
    (found,) = out.glob("poggio-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment outside the repository with the wheel and its dependencies."""
    where = tmp_path_factory.mktemp("venv") / "env"
    _run(sys.executable, "-m", "venv", where, cwd=where.parent)
    _run(
        where / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
        cwd=where.parent,
    )
    return where / "bin"


def test_wheel_ships_templates_static_files_migrations_and_no_generic_names(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"poggio", "portal", "mcp_server", "poggio_accounts", "poggio_contacts", "poggio_revenue"}
    for path in (
        "portal/templates/layout.html",
        "portal/templates/settings/mcp.html",
        "portal/static/portal.css",
        "portal/static/portal.js",
        "portal/static/vendor/htmx/htmx.min.js",
        "portal/static/vendor/htmx/LICENSE",
        "poggio/storage/migrations/0001_core.py",
        "poggio_accounts/migrations/0001_accounts.py",
        "poggio_revenue/migrations/0002_revenue_days.py",
        "poggio_accounts/account_card.html",  # MCP App views, read when the packs load
        "poggio_revenue/pipeline.html",
    ):
        assert path in names, path
    checkout = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.html")}
    assert {n.removeprefix("portal/templates/") for n in names if n.startswith("portal/templates/")} == checkout
    packages = {
        str(p.parent.relative_to(ROOT))
        for p in ROOT.glob("*/**/__init__.py")
        if not p.is_relative_to(ROOT / "tests")
        and not p.is_relative_to(ROOT / "examples")
        and ".venv" not in p.parts
        and "build" not in p.parts
        and "benchmarks" not in p.parts
    }
    shipped = {p.removeprefix("plugins/") for p in packages}
    assert all(f"{p}/__init__.py" in names for p in shipped), "a package of the checkout is missing from the wheel"


def test_wheel_installs_and_runs_anywhere(venv, tmp_path):
    """db upgrade, demo and up in a folder of its own: the portal's pages, CSS, JavaScript and htmx,
    the MCP server's tools, and the instance folder in the current directory."""
    home = tmp_path / "somewhere"
    home.mkdir()
    _run(venv / "poggio", "db", "upgrade", cwd=home)
    demo = _run(venv / "poggio", "demo", "--accounts", "20", cwd=home)
    assert "admin@acme.example" in demo.stdout
    assert (home / "instance" / "poggio.db").exists() and (home / "instance" / "secret_key").exists()
    site = next((venv.parent / "lib").glob("python3*/site-packages"))
    assert not list(site.rglob("poggio.db")) and not (site / "instance").exists()
    token = _run(venv / "poggio", "token", "create", "--workspace", "acme", "--name", "wheel", cwd=home).stdout.strip()

    portal_port, mcp_port = free_port(), free_port()
    ports = {"POGGIO_PORTAL_PORT": str(portal_port), "POGGIO_MCP_PORT": str(mcp_port)}
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen(
        [str(venv / "poggio"), "up"], cwd=home, env=_env(**ports), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        portal = f"http://127.0.0.1:{portal_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if (
                    httpx.get(f"{portal}/sign-in", timeout=1).status_code == 200
                    and httpx.get(f"http://127.0.0.1:{mcp_port}/readyz", timeout=1).status_code == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.3)
        page = httpx.get(f"{portal}/sign-in").text
        assert "<form" in page and "/vendor/htmx.min.js" in page and "/static/portal.css" in page
        assert "text/css" in httpx.get(f"{portal}/static/portal.css").headers["content-type"]
        assert httpx.get(f"{portal}/static/portal.js").status_code == 200
        assert hashlib.sha256(httpx.get(f"{portal}/vendor/htmx.min.js").content).hexdigest() == HTMX_SHA256
        client = Mcp(f"http://127.0.0.1:{mcp_port}/mcp", token)
        assert "get_account" in client.tool_names()
        assert (
            client.call("get_account", {"domain": "example.com"}).structured_content["account"]["name"]
            == "Example Corp"
        )
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=20)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()


def test_third_party_packs_install_from_their_folders_and_are_served(venv, tmp_path):
    """The example pack and a `poggio pack new` project, each pip-installed from its own folder, pass
    their own tests, and are listed and served next to the built-in packs."""
    home = tmp_path / "work"
    home.mkdir()
    weather = shutil.copytree(ROOT / "examples" / "poggio-weather", home / "poggio-weather")
    _run(venv / "poggio", "pack", "new", "crm_notes", cwd=home)
    scaffold = home / "poggio-crm-notes"
    assert (scaffold / "pyproject.toml").exists()
    _run(
        venv / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"{weather}[test]",
        "-e",
        f"{scaffold}[test]",
        cwd=home,
    )
    for project in (weather, scaffold):
        tests = _run(venv / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
        assert " passed" in tests.stdout and "failed" not in tests.stdout

    _run(venv / "poggio", "demo", "--accounts", "10", cwd=home)
    forecasts = home / "forecasts.csv"
    forecasts.write_text("city,forecast\nPorto,sunny with a chance of renewals\n")
    _run(venv / "poggio", "import", "forecasts", forecasts, "--workspace", "acme", cwd=home)
    listing = _run(venv / "poggio", "packs", "list", cwd=home).stdout
    assert "weather 1.0.0  Sales weather" in listing and "sales_weather" in listing
    assert "crm_notes 0.1.0" in listing and "crm_notes_hello" in listing and "accounts 0.1.0" in listing
    assert "FAILED" not in listing
    token = _run(venv / "poggio", "token", "create", "--workspace", "acme", "--name", "packs", cwd=home).stdout.strip()

    port = free_port()
    log = open(tmp_path / "mcp.log", "wb")
    server = subprocess.Popen(
        [str(venv / "poggio"), "mcp", "--port", str(port)], cwd=home, env=_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "mcp.log").read_text()
            time.sleep(0.2)
        client = Mcp(f"http://127.0.0.1:{port}/mcp", token)
        names = client.tool_names()
        assert {"sales_weather", "crm_notes_hello", "search_accounts", "list_opportunities"} <= set(names)
        weather_answer = client.call("sales_weather", {"city": "porto"})
        assert weather_answer.structured_content["forecast"] == "sunny with a chance of renewals"
        assert client.call("crm_notes_hello", {"who": "Ada"}).content[0].text == "Hello, Ada!"
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
