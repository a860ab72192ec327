"""Tool packs: third-party packs through the entry-point group, failing packs reported and left out."""

from __future__ import annotations

import importlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import Mcp, install_pack
from instances import ServerProcess, make_instance

from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

WEATHER = '''
from typing import Annotated
from pydantic import BaseModel, Field
from poggio import PackInfo, ToolResult, hookimpl, tool


class Forecast(BaseModel):
    city: str
    forecast: str
    workspace_id: int


ICON = {"src": "data:image/svg+xml;base64,PHN2Zy8+", "mime_type": "image/svg+xml", "sizes": ["any"]}


@tool(title="Sales weather", icons=[ICON])
def sales_weather(ctx, city: Annotated[str, Field(min_length=1, max_length=50, description="A city.")]) -> Forecast:
    """How the sales weather looks in a city (a third-party pack)."""
    data = Forecast(city=city, forecast="sunny with a chance of renewals", workspace_id=ctx.workspace_id)
    return ToolResult(data, f"{city}: {data.forecast}")


@hookimpl
def poggio_pack():
    return PackInfo(name="weather", title="Sales weather", version="1.0.0", description="A third-party pack.")


@hookimpl
def poggio_tools():
    return [sales_weather]
'''

BROKEN = """
raise RuntimeError("this pack cannot even be imported")
"""

BAD_HOOK = """
from poggio import PackInfo, hookimpl


@hookimpl
def poggio_pack():
    return PackInfo(name="badhook", title="Bad hook", version="0.1")


@hookimpl
def poggio_tools():
    raise ValueError("tools exploded")
"""

TYPO = """
from poggio import PackInfo, hookimpl


@hookimpl
def poggio_pack():
    return PackInfo(name="typo", title="Typo", version="0.1")


@hookimpl
def poggio_toolz():
    return []
"""


FAULTY = '''
import time
from typing import Annotated
from pydantic import Field
from poggio import PackInfo, hookimpl, tool
from poggio.storage.db import database


@tool(title="Explode")
def explode(ctx) -> None:
    """Raises, as a buggy pack's tool would."""
    raise RuntimeError("the faulty pack's tool blew up")


@tool(title="Nap", thread=True)  # waits like a network call: not on the event loop
def nap(ctx, seconds: Annotated[float, Field(ge=0, le=60)] = 30) -> None:
    """Sleeps, as a tool waiting on a slow outside service would."""
    time.sleep(seconds)


@tool(title="Grind")
def grind(ctx) -> None:
    """Runs SQL that would take minutes."""
    database.execute_sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                         "SELECT COUNT(*) FROM (SELECT x FROM n LIMIT 10000000000)").fetchone()


@hookimpl
def poggio_pack():
    return PackInfo(name="faulty", title="Faulty", version="0.1", description="Tools that fail.")


@hookimpl
def poggio_tools():
    return [explode, nap, grind]
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = install_pack(
        tmp_path / "site",
        "poggio-weather",
        "1.0.0",
        {"poggio_weather": WEATHER, "poggio_broken": BROKEN, "poggio_badhook": BAD_HOOK, "poggio_typo": TYPO},
        {"weather": "poggio_weather", "broken": "poggio_broken", "badhook": "poggio_badhook", "typo": "poggio_typo"},
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    for name in ("poggio_weather", "poggio_broken", "poggio_badhook", "poggio_typo"):
        sys.modules.pop(name, None)


def test_registry_loads_third_party_pack_and_reports_broken_ones(site):
    registry = PackRegistry.load()
    assert set(registry.names) == {"accounts", "contacts", "revenue", "weather"}
    assert registry.tool("sales_weather").pack == "weather"
    assert registry.packs["weather"].distribution == "poggio-weather 1.0.0"
    assert "import failed: RuntimeError: this pack cannot even be imported" in registry.errors["broken"]
    assert "tools exploded" in registry.errors["badhook"]
    assert "poggio_toolz" in registry.errors["typo"]


def test_poggio_packs_selects_packs_and_requirements_hold(site):
    registry = PackRegistry.load(["contacts", "weather", "nonexistent"])
    assert registry.names == ["weather"]
    assert "requires pack 'accounts'" in registry.errors["contacts"]
    assert "not installed" in registry.errors["nonexistent"]
    assert set(PackRegistry.load(["accounts", "contacts"]).names) == {"accounts", "contacts"}


def test_registry_from_modules_builds_exactly_what_a_test_wants():
    import poggio_accounts

    registry = PackRegistry.from_modules({"accounts": poggio_accounts})
    assert [t.name for t in registry.tools()] == [
        "search_accounts",
        "get_account",
        "create_account",
        "update_account",
        "add_note",
    ]


def _serve(tmp_path, site, *token_packs: str | None, env=None):
    """A SQLite instance with workspace "acme" and a token per pack scope given, served by an MCP
    server process that sees the packs installed in ``site``: ``(server, workspace, tokens)``."""
    inst = make_instance(tmp_path / "inst", "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        ws = create_workspace("acme", "Acme", True, Actor.cli())
        tokens = [
            TokenService().create(ws, f"token {i}", Actor.cli(), packs=packs).plaintext
            for i, packs in enumerate(token_packs)
        ]
    return ServerProcess(inst, extra_env={"PYTHONPATH": str(site), **(env or {})}), ws, tokens


def test_third_party_pack_served_over_mcp_while_broken_ones_stay_out(site, tmp_path):
    server, ws, (token, weather_only) = _serve(tmp_path, site, None, "weather")
    try:
        client = Mcp(server.mcp_url, token)
        tools = {t.name: t for t in client.tools()}
        assert "sales_weather" in tools and "search_accounts" in tools
        icon = tools["sales_weather"].icons[0]  # a pack's icons reach the client
        assert (icon.src, icon.mime_type, icon.sizes) == (
            "data:image/svg+xml;base64,PHN2Zy8+",
            "image/svg+xml",
            ["any"],
        )
        assert tools["search_accounts"].icons is None
        result = client.call("sales_weather", {"city": "Lisbon"})
        assert not result.is_error
        assert result.structured_content["forecast"].startswith("sunny")
        assert result.structured_content["workspace_id"] == ws.id
        assert not client.call("search_accounts", {"limit": 1}).is_error
        assert Mcp(server.mcp_url, weather_only).tool_names() == ["sales_weather"]
        assert "this pack cannot even be imported" in server.log()
    finally:
        server.stop()


def test_tool_result_attachments_become_mcp_content_blocks():
    from mcp_server.binding import _content
    from poggio import Audio, Image, Resource, ToolResult

    result = ToolResult(
        None,
        "see attached",
        (
            Image(b"\x89PNG", "image/png"),
            Audio(b"RIFF", "audio/wav"),
            Resource("test://notes", "text/plain", text="hello"),
            Resource("test://raw", "application/octet-stream", blob=b"\x00\x01"),
        ),
    )
    blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in _content(result)]
    assert blocks == [
        {"type": "text", "text": "see attached"},
        {"type": "image", "data": "iVBORw==", "mimeType": "image/png"},
        {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
        {"type": "resource", "resource": {"uri": "test://notes", "mimeType": "text/plain", "text": "hello"}},
        {"type": "resource", "resource": {"uri": "test://raw", "mimeType": "application/octet-stream", "blob": "AAE="}},
    ]
    with pytest.raises(ValueError):
        Resource("test://both", "text/plain", text="a", blob=b"b")
    with pytest.raises(ValueError):
        Resource("test://neither", "text/plain")


def test_an_icon_must_be_a_uri_a_client_can_show():
    from poggio import Icon, tool

    assert Icon("https://example.com/i.png", sizes=("48x48",)).sizes == ("48x48",)
    with pytest.raises(ValueError, match="https:, http: or data:"):
        Icon("javascript:alert(1)")
    with pytest.raises(ValueError, match="'light' or 'dark'"):
        Icon("https://example.com/i.png", theme="sepia")
    with pytest.raises(TypeError):

        @tool(title="x", icons=[{"href": "https://example.com/i.png"}])
        def x(ctx):
            """x"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_faulty_tools_are_contained_and_slow_ones_cut(tmp_path):
    """A tool that raises gives an internal-error result; one that sleeps is cut by the per-call
    timeout while the server keeps answering others at once; one whose SQL would run for minutes is
    cut too, and its query stopped: the server goes idle instead of grinding on."""
    site = install_pack(
        tmp_path / "site", "poggio-faulty", "0.1", {"poggio_faulty": FAULTY}, {"faulty": "poggio_faulty"}
    )
    server, _, (token,) = _serve(tmp_path, site, None, env={"POGGIO_TOOL_TIMEOUT_SECONDS": "3"})
    try:
        client = Mcp(server.mcp_url, token)
        boom = client.call("explode", {})
        assert boom.is_error and "explode failed because of an internal error" in boom.content[0].text
        assert "blew up" not in boom.content[0].text  # the cause is logged, not sent

        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            sleeping = pool.submit(client.call, "nap", {"seconds": 20})
            for _ in range(3):  # the event loop is free while the tool sleeps in its thread
                assert not client.call("search_accounts", {"limit": 1}).is_error
                assert not sleeping.done(), "an answer waited for the sleeping tool"
            napped = sleeping.result(timeout=30)
        assert napped.is_error and "nap took longer than 3 s and was stopped" in napped.content[0].text
        assert time.monotonic() - started < 15  # cut, not slept out

        ground = client.call("grind", {})
        assert ground.is_error and "grind took longer than 3 s" in ground.content[0].text
        # the statement deadline (timeout + 1 s grace) stops the query: the server goes idle
        deadline = time.monotonic() + 30
        while True:
            before = _cpu_seconds(server.proc.pid)
            time.sleep(1)
            if _cpu_seconds(server.proc.pid) - before < 0.25:
                break
            assert time.monotonic() < deadline, "the abandoned query is still running"
        assert not client.call("search_accounts", {"limit": 1}).is_error
        assert "the faulty pack's tool blew up" in server.log()
    finally:
        server.stop()
