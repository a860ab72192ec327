"""The portal end to end in Debian's Chromium (Playwright), against a real portal process and a real
MCP server process on one database: the whole token life cycle as an admin lives it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from helpers import Mcp
from instances import ROOT, PortalProcess, ServerProcess, make_instance

from poggio.commands import demo
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    inst = make_instance(tmp_path_factory.mktemp("e2e"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        result = demo.build(PackRegistry.load(), "acme", accounts=25)
    mcp = ServerProcess(inst)
    portal = PortalProcess(inst, extra_env={"POGGIO_MCP_PUBLIC_URL": mcp.mcp_url})
    base = portal.url
    yield {"portal": base, "mcp": mcp, "email": result.admin_email, "password": result.admin_password}
    portal.stop()
    mcp.stop()


@pytest.fixture
def page(stack):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack["portal"])
        page = context.new_page()
        errors: list[str] = []
        # Validation answers (422) are expected; anything else (a CSP violation, a script error) is not.
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "422" not in m.text else None)
        page.on("dialog", lambda d: d.accept())  # the revoke/rotate confirmations
        yield page
        assert not errors, f"browser console errors: {errors}"  # CSP violations show up here
        browser.close()


def _sign_in(page, stack) -> None:
    page.goto(f"{stack['portal']}/")
    page.fill("#email", stack["email"])
    page.fill("#password", stack["password"])
    page.click("button[type=submit]")


def test_token_life_cycle_in_the_browser(stack, page):
    from playwright.sync_api import expect

    mcp = stack["mcp"]
    _sign_in(page, stack)
    page.click("nav.sidebar >> text=Settings")
    page.click("nav.sidebar >> text=MCP Server")
    expect(page.locator("h1")).to_have_text("MCP Server")
    expect(page.locator("#server-url")).to_have_text(mcp.mcp_url)
    page.screenshot(path=str(ARTIFACTS / "mcp-server-empty.png"), full_page=True)

    page.click("[data-copy='#server-url']")
    assert page.evaluate("navigator.clipboard.readText()") == mcp.mcp_url

    page.click("text=Generate token")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.click("#dialog-body button[type=submit]")  # no name: an inline error, nothing created
    expect(page.locator("#dialog-body .field-error")).to_contain_text("a name is required")
    page.fill("#dialog-body #name", "ACME Slack agent")
    expect(page.locator("#dialog-body .write-warning")).to_contain_text("Write lets it change your data")
    page.check("#dialog-body input[name=write][value=accounts]")  # accounts: read and write
    page.check("#dialog-body input[name=packs][value=contacts]")  # contacts: read
    page.click("#dialog-body button[type=submit]")
    secret = page.locator("#new-token")
    expect(secret).to_be_visible()
    token = secret.inner_text().strip()
    assert re.fullmatch(r"pgo_[A-Za-z0-9]{33}", token)
    expect(page.locator("#token-list")).to_contain_text("ACME Slack agent")
    page.screenshot(path=str(ARTIFACTS / "mcp-server-token-shown-once.png"), full_page=True)
    page.click("#dialog-body [data-close-dialog]")
    expect(dialog).not_to_be_visible()
    assert token not in page.content()

    client = Mcp(mcp.mcp_url, token)
    assert set(client.tool_names()) == {
        "search_accounts",
        "get_account",
        "create_account",
        "update_account",
        "add_note",
        "search_contacts",
        "get_contact",
    }
    expect(page.locator("#token-list")).to_contain_text("accounts (read and write), contacts (read)")
    account = client.call("get_account", {"domain": "example.com"})
    assert not account.is_error and account.structured_content["account"]["name"] == "Example Corp"

    row = page.locator("#token-list tbody tr").first
    row.locator("a[title='Edit name or expiry']").click()
    page.fill("#token-list tr.editing input[name=name]", "RevOps Control Panel")
    page.click("#token-list tr.editing button[type=submit]")
    expect(page.locator("#token-list")).to_contain_text("RevOps Control Panel")

    time.sleep(1)  # usage is flushed every 0.2 s in tests
    page.reload()
    row = page.locator("#token-list tbody tr").first
    expect(row.locator(".last-used")).to_contain_text("poggio-tests 1.2.3")
    expect(row.locator(".activity")).to_contain_text("calls")
    assert row.locator("svg.spark rect.day").count() == 30
    page.screenshot(path=str(ARTIFACTS / "mcp-server-with-tokens.png"), full_page=True)

    row.locator("button[title='Revoke']").click()
    expect(page.locator("#token-list tbody tr").first).to_contain_text("Revoked")
    assert client.status_of_failure() == 401

    page.click("text=Audit log")
    expect(page.locator("table.grid")).to_contain_text("Token revoked")


@pytest.mark.parametrize("how", ["escape", "backdrop", "done"])
def test_the_secret_leaves_the_page_however_the_dialog_closes(stack, page, how):
    from playwright.sync_api import expect

    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/settings/mcp/")
    page.click("text=Generate token")
    page.fill("#dialog-body #name", f"closed by {how}")
    page.click("#dialog-body button[type=submit]")
    secret = page.locator("#new-token")
    expect(secret).to_be_visible()
    token = secret.inner_text().strip()
    if how == "escape":
        page.keyboard.press("Escape")
    elif how == "backdrop":
        page.mouse.click(5, 5)  # outside the dialog's box: on its backdrop
    else:
        page.click("#dialog-body [data-close-dialog]")
    expect(page.locator("#token-dialog")).not_to_be_visible()
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()
    assert page.evaluate("document.getElementById('dialog-body').innerHTML") == ""
