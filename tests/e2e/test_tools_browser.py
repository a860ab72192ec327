"""Settings > MCP Server > Tools in Debian's Chromium, against real portal and MCP server processes:
a click on a tool's switch swaps its row in place (HTMX, no page load, CSRF from the page), and the
workspace's token stops seeing the tool at its next request; a second click brings it back."""

from __future__ import annotations

import pytest
from helpers import Mcp
from instances import PortalProcess, ServerProcess, make_instance
from test_browser import ARTIFACTS, CHROMIUM, _sign_in, page  # noqa: F401  (the page fixture)

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import get_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    inst = make_instance(tmp_path_factory.mktemp("e2e-tools"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        result = demo.build(PackRegistry.load(), "acme", accounts=5)
        token = TokenService().create(get_workspace("acme"), "agent", Actor.cli()).plaintext
    portal, server = PortalProcess(inst), ServerProcess(inst)
    yield {
        "portal": portal.url,
        "email": result.admin_email,
        "password": result.admin_password,
        "mcp": Mcp(server.mcp_url, token),
    }
    portal.stop()
    server.stop()


def test_a_tool_switched_off_in_the_browser_is_gone_for_the_token(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    assert "get_account" in stack["mcp"].tool_names()
    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/settings/mcp/")
    switch = page.locator("#tool-get_account button[role=switch]")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(page.locator("#tool-update_account .annotations")).to_contain_text("destructive")
    page.evaluate("window.__same_page = true")  # gone if the click loaded a new page
    with page.expect_response(lambda r: r.url.endswith("/settings/mcp/tools/get_account") and r.status == 200):
        switch.click()
    expect(page.locator("#tool-get_account button[role=switch]")).to_have_attribute("aria-checked", "false")
    expect(page.locator("#tool-get_account")).to_have_class("tool-row off")
    assert page.evaluate("window.__same_page") is True
    page.locator("#tools").screenshot(path=str(ARTIFACTS / "settings-tools.png"))
    assert "get_account" not in stack["mcp"].tool_names()
    assert stack["mcp"].call("get_account", {"domain": "example.com"}).is_error
    with page.expect_response(lambda r: r.url.endswith("/settings/mcp/tools/get_account") and r.status == 200):
        page.locator("#tool-get_account button[role=switch]").click()
    expect(page.locator("#tool-get_account button[role=switch]")).to_have_attribute("aria-checked", "true")
    assert "get_account" in stack["mcp"].tool_names()
