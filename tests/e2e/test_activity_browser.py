"""Token governance in Debian's Chromium against real portal and MCP server processes: a token's
activity log filtered over HTMX, its CSV export downloaded, rotation with a grace period."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest
from instances import PortalProcess, ServerProcess, make_instance
from test_browser import ARTIFACTS, CHROMIUM, _sign_in, page  # noqa: F401  (the page fixture)

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import database
from poggio.storage.models import Activity, Workspace

pytestmark = pytest.mark.browser
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    inst = make_instance(tmp_path_factory.mktemp("e2e-activity"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        result = demo.build(PackRegistry.load(), "acme", accounts=25)
        issued = TokenService().create(Workspace.get(slug="acme"), "audited agent", Actor.cli(), packs="accounts")
    mcp = ServerProcess(inst)
    portal = PortalProcess(inst, extra_env={"POGGIO_MCP_PUBLIC_URL": mcp.mcp_url})
    calls = [("search_accounts", {"limit": 2})] * 3 + [("get_revenue_summary", {})] * 2  # 3 ok, 2 refused
    for i, (name, args) in enumerate(calls):
        httpx.post(
            mcp.mcp_url,
            json={"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}},
            headers={**HEADERS, "Authorization": f"Bearer {issued.plaintext}"},
            timeout=20,
        ).raise_for_status()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with database.connection_context():
            if Activity.select().count() >= len(calls):
                break
        time.sleep(0.1)
    yield {
        "portal": portal.url,
        "mcp": mcp,
        "email": result.admin_email,
        "password": result.admin_password,
        "token": issued.token,
    }
    portal.stop()
    mcp.stop()


def test_activity_filter_and_csv_export_in_the_browser(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/settings/mcp/")
    page.locator(f"#token-{stack['token'].id} a.log-link").click()
    expect(page.locator("h1")).to_have_text("Activity of audited agent")
    rows = page.locator("#activity-results table.activity-log tbody tr")  # the log; the chart has its own tables
    expect(rows).to_have_count(5)
    page.select_option("select[name=outcome]", "refused")  # HTMX: the results swap, the URL follows
    expect(rows).to_have_count(2)
    expect(page.locator("#activity-results table.activity-log tbody")).not_to_contain_text("OK")
    assert "outcome=refused" in page.url
    page.screenshot(path=str(ARTIFACTS / "activity-filtered.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.startswith("poggio-activity-acme-") and download.suggested_filename.endswith(
        ".csv"
    )
    exported = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [(r["tool"], r["outcome"], r["subject"]) for r in exported] == [
        ("get_revenue_summary", "refused", "audited agent")
    ] * 2
    page.select_option("select[name=outcome]", "")
    expect(rows).to_have_count(5)


def test_rotation_with_a_grace_period_in_the_browser(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/settings/mcp/")
    page.click(f"#token-{stack['token'].id} [title=Rotate]")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[value='24h']").check()
    dialog.locator("button:has-text('Rotate')").click()
    expect(dialog.locator("#new-token")).to_contain_text("pgo_")
    new_secret = dialog.locator("#new-token").inner_text()
    expect(dialog.locator(".overlap")).to_contain_text("keeps working until")
    row = page.locator(f"#token-{stack['token'].id}")
    expect(row.locator(".old-secret")).to_contain_text("until")
    answer = httpx.post(
        stack["mcp"].mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**HEADERS, "Authorization": f"Bearer {new_secret}"},
        timeout=20,
    )
    assert answer.status_code == 200
