"""The activity chart and the home page in Debian's Chromium, against a real portal process: uPlot
draws under the Content-Security-Policy (no console error), the filters redraw it, and the home page
lists what needs attention. Screenshots go to test-artifacts/."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from instances import PortalProcess, make_instance
from test_browser import ARTIFACTS, CHROMIUM, _sign_in, page  # noqa: F401  (the page fixture)

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, ApiToken, TokenUsage, Workspace

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    inst = make_instance(tmp_path_factory.mktemp("e2e-glance"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        result = demo.build(PackRegistry.load(), "acme", accounts=5)
        ws = Workspace.get(slug="acme")
        service = TokenService()
        agent = service.create(ws, "sales agent", Actor.cli()).token
        service.create(ws, "nightly export", Actor.cli(), expires="3d")
        stale = service.create(ws, "old integration", Actor.cli()).token
        ApiToken.update(created_at=utcnow() - dt.timedelta(days=45)).where(ApiToken.id == stale.id).execute()
        rng, now = random.Random(3), utcnow()
        rows = []
        for _ in range(3000):
            at = now - dt.timedelta(seconds=rng.random() * 14 * 86400)
            outcome = rng.choice(["ok"] * 20 + ["tool_error", "refused", "rate_limited"])
            rows.append(
                {
                    "workspace": ws.id,
                    "kind": "token",
                    "subject_id": agent.id,
                    "at": at,
                    "tool": rng.choice(["search_accounts", "get_account", "list_contacts"]),
                    "outcome": outcome,
                    "latency_ms": round(rng.lognormvariate(3, 0.6), 1),
                    "client": "claude-code",
                    "ip": "10.0.0.5",
                }
            )
        rows.append({**rows[0], "at": now - dt.timedelta(minutes=5), "ip": "203.0.113.50", "client": "curl"})
        Activity.insert_many(rows).execute()
        for i in range(1, 31):
            TokenUsage.insert(
                token=agent, day=now.date() - dt.timedelta(days=i), tool="search_accounts", calls=60
            ).execute()
        TokenUsage.insert(token=agent, day=now.date(), tool="search_accounts", calls=900).execute()
    portal = PortalProcess(inst)
    yield {"portal": portal.url, "email": result.admin_email, "password": result.admin_password, "agent": agent}
    portal.stop()


def test_the_activity_chart_draws_and_follows_the_filters(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/settings/mcp/activity")
    expect(page.locator("#calls-chart .uplot")).to_have_count(1)
    expect(page.locator("#latency-chart .uplot")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "activity-chart.png"), full_page=True)
    with page.expect_response(lambda r: "chart.json" in r.url and "outcome=refused" in r.url):
        page.select_option("select[name=outcome]", "refused")
    expect(page.locator("#calls-chart .uplot")).to_have_count(1)
    page.goto(f"{stack['portal']}/settings/mcp/tokens/{stack['agent'].id}/activity?since=24h")
    expect(page.locator("#calls-chart .uplot")).to_have_count(1)
    expect(page.locator("figcaption")).to_contain_text("Calls per hour")


def test_the_home_page_says_what_needs_attention(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    _sign_in(page, stack)
    page.goto(f"{stack['portal']}/")
    attention = page.locator("section.attention")
    expect(attention).to_contain_text("Token “nightly export” expires")
    expect(attention).to_contain_text("Token “old integration” never used")
    expect(attention).to_contain_text("used from a network it had not used before (203.0.113.0/24)")
    expect(attention).to_contain_text("900 calls today")
    page.screenshot(path=str(ARTIFACTS / "home-attention.png"), full_page=True)
    page.click("text=Token “nightly export” expires")
    assert "/settings/mcp/tokens/" in page.url


AXE = __import__("pathlib").Path(__file__).parent / "vendor" / "axe-core"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"


def _axe_violations(tab) -> list[str]:
    import hashlib

    source = (AXE / "axe.min.js").read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256
    tab.evaluate(source.decode() + "\n;undefined")  # through the debugger protocol: the page's CSP stays as it is
    result = tab.evaluate("axe.run(document.querySelector('main'), {runOnly: ['wcag2a', 'wcag2aa']})")
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}: {v['nodes'][0]['target']})" for v in result["violations"]]


def test_the_chart_home_and_webhook_pages_are_axe_clean(stack, page):  # noqa: F811
    from playwright.sync_api import expect

    _sign_in(page, stack)
    for path, ready in (
        ("/settings/mcp/activity", "#calls-chart .uplot"),
        ("/", "section.attention"),
        ("/settings/webhooks/", "form"),
    ):
        page.goto(f"{stack['portal']}{path}")
        expect(page.locator(ready).first).to_be_visible()
        assert _axe_violations(page) == [], path
    # the check itself sees a violation when there is one
    page.evaluate("document.querySelector('main').appendChild(document.createElement('img')).src = 'data:,'")
    assert any(v.startswith("image-alt") for v in _axe_violations(page))
