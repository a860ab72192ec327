"""The documentation site (docs/, mkdocs.yml) stays whole: it builds with ``mkdocs build --strict``, every
setting poggio/settings.py reads has a row on the configuration page, every hookspec an entry in the
built hooks reference, and the client pages show the snippets the client tests run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from instances import ROOT

from poggio.runtime.plugins import PackRegistry

CONFIGURATION = ROOT / "docs" / "operators" / "configuration.md"


def _settings_read() -> set[str]:
    """Every POGGIO_* name poggio/settings.py reads: each field of the Settings dataclass (read as
    POGGIO_<FIELD>) and every POGGIO_* name it spells out."""
    source = (ROOT / "poggio" / "settings.py").read_text()
    tree = ast.parse(source)
    settings = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    fields = {
        f"POGGIO_{n.target.id.upper()}"
        for n in settings.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    spelled = set(re.findall(r"POGGIO_[A-Z][A-Z0-9_]*[A-Z0-9]", source))
    return fields | spelled


def test_the_settings_parser_sees_the_settings():
    names = _settings_read()
    assert {"POGGIO_DATABASE_URL", "POGGIO_INSTANCE_PATH", "POGGIO_TRUSTED_PROXIES", "POGGIO_REDIS_URL"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize("name", sorted(_settings_read()))
def test_every_setting_has_a_row_on_the_configuration_page(name):
    rows = [line for line in CONFIGURATION.read_text().splitlines() if line.startswith("| `POGGIO_")]
    assert any(f"`{name}`" in row.split("|")[1] for row in rows), (
        f"{name} is read by poggio/settings.py but has no row in {CONFIGURATION.relative_to(ROOT)}'s table"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _hookspecs() -> dict[str, list[str]]:
    registry = PackRegistry.load()
    return {
        name: list(caller.spec.argnames)
        for name, caller in vars(registry.pm.hook).items()
        if not name.startswith("_") and caller.has_spec()
    }


@pytest.mark.parametrize("hook", sorted(_hookspecs()))
def test_every_hook_has_an_entry_in_the_built_reference(site, hook):
    page = (site / "pack-authors" / "hooks" / "index.html").read_text()
    heading = re.search(rf'<h3 id="{hook}">(.*?)</h3>', page, re.S)
    assert heading, f"the built hooks reference has no entry for {hook}"
    args = ", ".join(_hookspecs()[hook])
    assert f"{hook}({args})" in re.sub(r"<[^>]+>", "", heading.group(1))


def _text(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize(
    ("page", "source"),
    [
        ("clients/python", "examples/python_client.py"),
        ("clients/inspector", "examples/clients/inspector-cli.sh"),
        ("clients/mcp-remote", "examples/clients/claude_desktop_config.json"),
        ("clients/claude", "examples/clients/claude_desktop_config.json"),
        ("pack-authors/first-tool", "examples/poggio-weather/poggio_weather/__init__.py"),
    ],
)
def test_client_pages_show_the_tested_files(site, page, source):
    shown = _text((site / page / "index.html").read_text())
    text = (ROOT / source).read_text()
    if "--8<-- [start:" in text:  # the page includes a section of the file
        text = text.split("--8<-- [start:", 1)[1].split("--8<-- [end:", 1)[0].split("\n", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    key = [line for line in lines if "Authorization" in line or "def " in line][:3]
    assert key and all(line in shown for line in key), f"{page} does not show {source}"
