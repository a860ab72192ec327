"""The activity chart: its JSON (calls per bucket stacked by outcome, median and p95 latency, top
tools) follows the activity page's filters, per workspace, token or connected app; the page carries
the figures as a table."""

from __future__ import annotations

import datetime as dt

from poggio.identity.tokens import TokenService
from poggio.records.activity import Filters
from poggio.records.activity_chart import buckets, chart
from poggio.records.audit import Actor
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, Workspace

CLI = Actor.cli()


def _seed():
    ws = Workspace.get(Workspace.slug == "acme")
    service = TokenService(known_packs={"accounts", "contacts", "revenue"})
    a = service.create(ws, "a", CLI).token
    b = service.create(ws, "b", CLI).token
    other = service.create(Workspace.get(Workspace.slug == "initrode"), "theirs", CLI).token
    now = utcnow()
    rows = []
    for i in range(1, 21):  # token a, two hours ago: latencies 1..20 ms, 4 tool errors
        rows.append(
            (
                ws.id,
                "token",
                a.id,
                now - dt.timedelta(hours=2),
                "search_accounts" if i % 2 else "get_account",
                "tool_error" if i <= 4 else "ok",
                float(i),
            )
        )
    rows.append((ws.id, "token", b.id, now - dt.timedelta(days=3), "search_accounts", "refused", 1.0))
    rows.append((other.workspace_id, "token", other.id, now - dt.timedelta(hours=1), "search", "ok", 1.0))
    Activity.insert_many(
        [
            {"workspace": w, "kind": k, "subject_id": s, "at": at, "tool": t, "outcome": o, "latency_ms": ms}
            for w, k, s, at, t, o, ms in rows
        ]
    ).execute()
    return ws, a, b, other


def test_the_chart_json_stacks_outcomes_with_latency_and_top_tools(admin):
    ws, a, b, other = _seed()
    data = admin.get("/settings/mcp/activity/chart.json").get_json()
    assert data["unit"] == "day" and len(data["buckets"]) == 31 and data["total"] == 21
    assert data["outcomes"]["ok"][-1] == 16 and data["outcomes"]["tool_error"][-1] == 4
    assert sum(data["outcomes"]["refused"]) == 1
    assert data["median_ms"][-1] == 10.0 and data["p95_ms"][-1] == 19.0
    assert data["top_tools"][0] == ["search_accounts", 11]
    hourly = admin.get("/settings/mcp/activity/chart.json?since=24h").get_json()
    assert hourly["unit"] == "hour" and hourly["total"] == 20 and 24 <= len(hourly["buckets"]) <= 25
    only_ok = admin.get("/settings/mcp/activity/chart.json?outcome=ok").get_json()
    assert only_ok["total"] == 16 and sum(only_ok["outcomes"]["tool_error"]) == 0
    assert dict(map(tuple, only_ok["top_tools"])) == {"search_accounts": 8, "get_account": 8}
    assert chart(other.workspace_id, Filters(kind="token", subject_id=a.id))["total"] == 0  # scoped by workspace
    per_token = admin.get(f"/settings/mcp/tokens/{b.id}/activity/chart.json").get_json()
    assert per_token["total"] == 1
    assert admin.get(f"/settings/mcp/tokens/{other.id}/activity/chart.json").status_code == 404
    bad = admin.get("/settings/mcp/activity/chart.json?outcome=nope")
    assert bad.status_code == 400 and "outcome" in bad.get_json()["error"]


def test_the_activity_page_has_the_chart_and_its_table(admin):
    _seed()
    page = admin.get("/settings/mcp/activity?outcome=tool_error").get_data(as_text=True)
    assert 'data-chart-url="/settings/mcp/activity/chart.json?outcome=tool_error"' in page
    assert "The chart&#39;s figures as a table" in page or "The chart's figures as a table" in page
    assert "vendor/uplot/uPlot.iife.min.js" in page and '<th scope="row">' in page


def test_buckets_are_whole_hours_or_days_and_bounded(app):
    now = dt.datetime(2026, 3, 1, 10, 30)
    unit, spans = buckets(now - dt.timedelta(hours=24), now)
    assert unit == "hour" and spans[0][0] == now - dt.timedelta(hours=24) and spans[-1][1] == now
    assert spans[1][0] == dt.datetime(2026, 2, 28, 11, 0)
    unit, spans = buckets(now - dt.timedelta(days=3000), now)
    assert unit == "day" and len(spans) == 120 and spans[-1][1] == now
    assert chart(1, Filters(), now)["total"] == 0
