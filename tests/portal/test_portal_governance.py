"""Token governance in the portal: the activity pages (filters, paging, HTMX), the streamed export, the
token policy (form, token dialog, consent page, client_credentials), the expiring-soon flags, rotation
with a grace period, network and rate limits in the token dialog."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re

from test_oauth import MCP, authorize_url, consent_fields, exchange, pkce, redirected, register

from poggio.identity.policy import set_policy
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, ApiToken, AuditEvent, OAuthGrant, Workspace

CLI = Actor.cli()


def acme() -> Workspace:
    return Workspace.get(Workspace.slug == "acme")


def seed(token_id: int, n: int, kind: str = "token", workspace=None, start=None) -> None:
    start = start or dt.datetime(2026, 11, 1)
    Activity.insert_many(
        [
            {
                "workspace": (workspace or acme()).id,
                "kind": kind,
                "subject_id": token_id,
                "at": start + dt.timedelta(minutes=i),
                "tool": ("get_account", "search_accounts")[i % 2],
                "outcome": ("ok", "ok", "refused")[i % 3],
                "latency_ms": 1.5,
                "client": "=cmd|evil",
                "ip": "127.0.0.1",
            }
            for i in range(n)
        ]
    ).execute()


def test_token_activity_page_filters_and_pages(admin):
    token = TokenService().create(acme(), "agent", CLI).token
    other = TokenService().create(acme(), "other", CLI).token
    seed(token.id, 120)
    seed(other.id, 5)
    page = admin.get(f"/settings/mcp/tokens/{token.id}/activity")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Activity of agent" in html
    assert html.count('class="outcome-') == 50 and "2026-11-01 01:59:00" in html  # newest first
    older = re.search(r'id="activity-older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    second = admin.get(older, headers={"HX-Request": "true", "HX-Target": "activity-results"})
    part = second.get_data(as_text=True)
    assert part.startswith('<div id="activity-results">') and "<html" not in part
    assert "2026-11-01 01:09:00" in part and "2026-11-01 01:59:00" not in part
    refused = admin.get(
        f"/settings/mcp/tokens/{token.id}/activity?outcome=refused&tool=get_account",
        headers={"HX-Request": "true", "HX-Target": "activity-results"},
    ).get_data(as_text=True)
    assert refused.count('class="outcome-refused"') == 20 and "outcome-ok" not in refused
    dated = admin.get(f"/settings/mcp/tokens/{token.id}/activity?since=2026-11-02").get_data(as_text=True)
    assert "No requests on record match these filters" in dated
    bad = admin.get(f"/settings/mcp/tokens/{token.id}/activity?since=soon&cursor=zzz")
    assert bad.status_code == 200 and "since:" in bad.get_data(as_text=True)


def test_workspace_activity_page_names_tokens_and_apps(admin):
    token = TokenService().create(acme(), "named agent", CLI).token
    seed(token.id, 3)
    html = admin.get("/settings/mcp/activity").get_data(as_text=True)
    assert "named agent" in html and html.count('class="outcome-') == 3


def test_activity_of_another_workspace_is_not_found_and_members_are_refused(admin, browser, app):
    initrode = Workspace.get(Workspace.slug == "initrode")
    foreign = TokenService().create(initrode, "theirs", CLI).token
    seed(foreign.id, 3, workspace=initrode)
    assert admin.get(f"/settings/mcp/tokens/{foreign.id}/activity").status_code == 404
    assert admin.get(f"/settings/mcp/activity/export.csv?kind=token&subject={foreign.id}").status_code == 404
    assert "theirs" not in admin.get("/settings/mcp/activity").get_data(as_text=True)
    member = app.test_client()
    from conftest import Browser

    m = Browser(member)
    m.sign_in("member@acme.example")
    assert m.get("/settings/mcp/activity").status_code == 403
    assert m.get("/settings/mcp/activity/export.jsonl").status_code == 403


def test_export_csv_and_jsonl_stream_with_filters(admin):
    token = TokenService().create(acme(), "exported", CLI).token
    seed(token.id, 30)
    r = admin.get(f"/settings/mcp/activity/export.csv?kind=token&subject={token.id}&outcome=refused")
    assert r.status_code == 200 and "Content-Length" not in r.headers and r.mimetype == "text/csv"  # streamed
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 10 and {row["outcome"] for row in rows} == {"refused"}
    assert rows[0]["subject"] == "exported" and rows[0]["client"] == "'=cmd|evil"  # no formula for a spreadsheet
    r = admin.get("/settings/mcp/activity/export.jsonl")
    lines = [json.loads(line) for line in r.get_data(as_text=True).splitlines()]
    assert len(lines) == 30 and lines[0]["at"] > lines[-1]["at"] and lines[0]["client"] == "=cmd|evil"
    assert admin.get("/settings/mcp/activity/export.csv?since=whenever").status_code == 400
    assert admin.get("/settings/mcp/activity/export.xml").status_code == 404
    assert admin.get("/settings/mcp/activity/export.csv?kind=token&subject=x").status_code == 400


def test_policy_form_limits_the_dialog_and_shortens_tokens(admin):
    forever = TokenService().create(acme(), "forever", CLI, expires="never").token
    r = admin.post("/settings/mcp/policy", {"default_expiry": "7", "max_lifetime": "30"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "Policy saved. 1 token(s) or app(s)" in html
    assert "shortened by policy" in html
    assert ApiToken.get_by_id(forever.id).expires_at <= utcnow() + dt.timedelta(days=30)
    assert AuditEvent.select().where(AuditEvent.action == "workspace.policy_changed").count() == 1
    dialog = admin.get("/settings/mcp/tokens/new", htmx=True).get_data(as_text=True)
    assert 'value="never"' not in dialog and 'value="60"' not in dialog and 'value="90"' not in dialog
    assert re.search(r'value="7"[^>]*checked|checked[^>]*value="7"', dialog)  # the default is the policy's
    r = admin.post("/settings/mcp/tokens", {"name": "sneaky", "expiry": "never"}, htmx=True)
    assert r.status_code == 422
    r = admin.post(
        "/settings/mcp/tokens",
        {"name": "dated", "expiry": "date", "expiry_date": (utcnow() + dt.timedelta(days=200)).date().isoformat()},
        htmx=True,
    )
    assert r.status_code == 422 and "at most 30 days" in r.get_data(as_text=True)
    r = admin.post("/settings/mcp/policy", {"default_expiry": "none", "max_lifetime": "30"})
    assert r.status_code == 422 and "not allowed by this policy" in r.get_data(as_text=True)


def test_token_dialog_sets_network_and_rate_limits(admin):
    r = admin.post(
        "/settings/mcp/tokens",
        {"name": "limited", "expiry": "30", "allowed_ips": "10.0.0.0/8\n2001:db8::/32", "rate_limit": "10/minute"},
        htmx=True,
    )
    assert r.status_code == 201
    token = ApiToken.get(ApiToken.name == "limited")
    assert token.allowed_ips == "10.0.0.0/8,2001:db8::/32" and token.rate_limit == "10/minute"
    assert "from 10.0.0.0/8, 2001:db8::/32; limit 10/minute" in admin.get("/settings/mcp/").get_data(as_text=True)
    r = admin.post("/settings/mcp/tokens", {"name": "bad", "expiry": "30", "allowed_ips": "10.0.0.0/33"}, htmx=True)
    assert r.status_code == 422 and "not an IP address or network" in r.get_data(as_text=True)
    r = admin.post("/settings/mcp/tokens", {"name": "greedy", "expiry": "30", "rate_limit": "99999/second"}, htmx=True)
    assert r.status_code == 422 and "below the installation" in r.get_data(as_text=True)
    # inline edit changes them
    admin.get(f"/settings/mcp/tokens/{token.id}/edit", htmx=True)
    r = admin.post(
        f"/settings/mcp/tokens/{token.id}",
        {"name": "limited", "expiry": "keep", "allowed_ips": "", "rate_limit": "5/minute"},
        htmx=True,
    )
    assert r.status_code == 200
    token = ApiToken.get_by_id(token.id)
    assert token.allowed_ips is None and token.rate_limit == "5/minute"


def test_expiring_soon_flagged_in_the_list_and_on_settings(admin):
    TokenService().create(acme(), "ending", CLI, expires="3d")
    TokenService().create(acme(), "fine", CLI, expires="60d")
    settings = admin.get("/settings").get_data(as_text=True)
    assert "1 API token expires within 7 days" in settings
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert "1 token expires within 7 days" in page and page.count('class="badge expiring"') == 1


def test_rotation_with_grace_shows_both_windows(admin):
    token = TokenService().create(acme(), "rotated", CLI).token
    dialog = admin.get(f"/settings/mcp/tokens/{token.id}/rotate", htmx=True).get_data(as_text=True)
    assert 'value="24h"' in dialog and 'value="7d"' in dialog
    r = admin.post(f"/settings/mcp/tokens/{token.id}/rotate", {"grace": "24h"}, htmx=True)
    html = r.get_data(as_text=True)
    token = ApiToken.get_by_id(token.id)
    assert r.status_code == 200 and "pgo_" in html and "keeps working until" in html
    assert token.previous_expires_at - token.rotated_at == dt.timedelta(hours=24)
    assert f"and the old <code>pgo_…{token.previous_last_four}</code> until" in admin.get("/settings/mcp/").get_data(
        as_text=True
    )
    detail = json.loads(AuditEvent.select().where(AuditEvent.action == "token.rotated").get().detail)
    assert detail["old_secret_until"].startswith(token.previous_expires_at.isoformat(sep=" ")[:16])
    assert admin.post(f"/settings/mcp/tokens/{token.id}/rotate", {"grace": "forever"}, htmx=True).status_code == 400


def test_consent_page_offers_no_longer_than_the_policy(admin):
    set_policy(acme(), CLI, max_lifetime="45d")
    reg = register(admin.client)
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    page = admin.get(url).get_data(as_text=True)
    assert 'value="never"' not in page and 'value="90"' not in page and 'value="45"' in page
    fields = consent_fields(page)
    r = admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "never"})
    assert r.status_code == 422 and "policy allows" in r.get_data(as_text=True)
    params = redirected(admin.post(url, {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "45"}))
    assert exchange(admin.client, reg["client_id"], params["code"], verifier).status_code == 200
    grant = OAuthGrant.select().order_by(OAuthGrant.id.desc()).first()
    assert abs(grant.expires_at - (utcnow() + dt.timedelta(days=45))) < dt.timedelta(seconds=10)


def test_client_credentials_end_at_the_maximum_lifetime(app):
    client = app.test_client()
    set_policy(acme(), CLI, max_lifetime="30d")
    issued = app.extensions["poggio"].oauth.create_confidential(acme(), "Robot", CLI, packs="accounts", resource=MCP)
    basic = base64.b64encode(f"{issued.client.client_id}:{issued.secret}".encode()).decode()
    ask = lambda: client.post(  # noqa: E731
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": MCP},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert ask().status_code == 200
    OAuthGrant.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
        OAuthGrant.client == issued.client.id
    ).execute()
    r = ask()
    assert r.status_code == 400 and "maximum lifetime" in r.get_json()["error_description"]


def test_connected_app_activity_page(app, admin):
    issued = app.extensions["poggio"].oauth.create_confidential(acme(), "Robot", CLI, packs="accounts", resource=MCP)
    grant = OAuthGrant.get(OAuthGrant.client == issued.client.id)
    seed(grant.id, 4, kind="grant")
    html = admin.get(f"/settings/mcp/apps/{grant.id}/activity").get_data(as_text=True)
    assert "Activity of Robot" in html and "Connected app" in html and html.count('class="outcome-') == 4
    tools = admin.get(
        f"/settings/mcp/apps/{grant.id}/activity", headers={"HX-Request": "true", "HX-Target": f"app-tools-{grant.id}"}
    )
    assert "Calls per tool" in tools.get_data(as_text=True)
    exported = admin.get(f"/settings/mcp/activity/export.jsonl?kind=grant&subject={grant.id}").get_data(as_text=True)
    assert [json.loads(line)["subject"] for line in exported.splitlines()] == ["Robot"] * 4


def test_extreme_filter_values_are_answered_not_overflowed(admin):
    for query in (
        "since=99999999999d",
        "until=9999-12-31",
        "since=0001-01-01T00:00:00%2B05:00",
        "cursor=2026-01-01T00:00:00~99999999999999999999999",
    ):
        r = admin.get(f"/settings/mcp/activity?{query}")
        assert r.status_code == 200, (query, r.status_code)
        assert admin.get(f"/settings/mcp/activity/export.csv?{query}").status_code in (200, 400)
