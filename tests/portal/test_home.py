"""The home page says what needs attention: for admins, expiring tokens, requests, unused tokens,
rising error rates, refusals today, unusual use and failing webhooks, each linked to where it is
fixed, and nothing of another workspace; for members, their own apps."""

from __future__ import annotations

import datetime as dt
import re

from poggio.identity.tokens import TokenService
from poggio.notices import attention
from poggio.notices.webhooks import add_endpoint
from poggio.records.audit import Actor
from poggio.records.webhook_outbox import WebhookEndpoint
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, ApiToken, TokenUsage, Workspace

CLI = Actor.cli()


def _tokens():
    return TokenService(known_packs={"accounts", "contacts", "revenue"})


def _activity(ws, token, at, ip="10.0.0.5", client="ci-bot", outcome="ok", n=1):
    Activity.insert_many(
        [
            {
                "workspace": ws.id,
                "kind": "token",
                "subject_id": token.id,
                "at": at,
                "tool": "search",
                "outcome": outcome,
                "latency_ms": 5,
                "client": client,
                "ip": ip,
            }
        ]
        * n
    ).execute()


def _usage(token, day, calls, errors=0):
    TokenUsage.insert(token=token, day=day, tool="search", calls=calls, errors=errors).execute()


def _seed():
    ws = Workspace.get(Workspace.slug == "acme")
    now, today = utcnow(), utcnow().date()
    soon = _tokens().create(ws, "soon", CLI, expires="3d").token
    stale = _tokens().create(ws, "stale", CLI).token
    ApiToken.update(created_at=now - dt.timedelta(days=40)).where(ApiToken.id == stale.id).execute()
    busy = _tokens().create(ws, "busy", CLI).token
    for i in range(1, 31):
        _usage(busy, today - dt.timedelta(days=i), 50)
    _usage(busy, today, 400)
    _activity(ws, busy, now - dt.timedelta(days=5), n=3)
    _activity(ws, busy, now - dt.timedelta(minutes=10), ip="203.0.113.9", client="curl")
    failing = _tokens().create(ws, "failing", CLI).token
    for i in range(2, 9):
        _usage(failing, today - dt.timedelta(days=i), 100, 1)
    _usage(failing, today, 20, 5)
    _usage(failing, today - dt.timedelta(days=1), 20, 5)
    _activity(ws, failing, now - dt.timedelta(minutes=5), outcome="refused", n=3)
    _activity(ws, failing, now - dt.timedelta(minutes=5), outcome="rate_limited", n=2)
    endpoint = add_endpoint(ws, "http://127.0.0.1:9/x", None, CLI, allow_private=True, secret_key="k").endpoint
    WebhookEndpoint.update(paused_at=now, failing_since=now - dt.timedelta(days=1)).where(
        WebhookEndpoint.id == endpoint.id
    ).execute()
    other = Workspace.get(Workspace.slug == "initrode")
    _tokens().create(other, "theirs-soon", CLI, expires="2d")
    return {"soon": soon, "stale": stale, "busy": busy, "failing": failing, "endpoint": endpoint}


def test_the_admin_home_lists_what_needs_attention_with_links(admin):
    seeded = _seed()
    page = admin.get("/").get_data(as_text=True)
    assert "Needs attention" in page and "theirs-soon" not in page
    text = re.sub(r"\s+", " ", page)
    soon, stale, busy, failing = (seeded[k].id for k in ("soon", "stale", "busy", "failing"))
    assert f'href="/settings/mcp/tokens/{soon}/edit">Token “soon” expires' in text
    assert f'href="/settings/mcp/tokens/{stale}/edit">Token “stale” never used' in text
    assert f'href="/settings/mcp/tokens/{busy}/activity">Token “busy”: 400 calls today, 8 times its usual 50' in text
    assert "Token “busy” used from a network it had not used before (203.0.113.0/24)" in text
    assert "Token “busy” used by a client it had not used before (curl)" in text
    assert f'href="/settings/mcp/tokens/{failing}/activity">Token “failing”: 10 of 40 calls failed' in text
    assert "3 calls refused (network, scope or policy) today" in text and "2 calls over a rate limit today" in text
    assert "outcome=refused" in text
    assert f'href="/settings/webhooks/{seeded["endpoint"].id}"' in text and "paused since" in text


def test_an_admin_with_nothing_to_do_is_told_so(admin):
    assert "Nothing needs your attention" in admin.get("/").get_data(as_text=True)
    assert attention.pending_app_requests(Workspace.get(Workspace.slug == "acme")) == []


def test_a_member_sees_their_own_apps_not_the_admin_list(browser):
    _seed()
    assert browser.sign_in("member@acme.example").status_code == 302
    page = browser.get("/").get_data(as_text=True)
    assert "Needs attention" not in page and "Your apps" in page and "soon" not in page


def test_a_busy_day_within_the_factor_or_below_the_floor_is_not_unusual(app):
    ws = Workspace.get(Workspace.slug == "acme")
    today = utcnow().date()
    steady = _tokens().create(ws, "steady", CLI).token
    rare = _tokens().create(ws, "rare", CLI).token
    for i in range(1, 31):
        _usage(steady, today - dt.timedelta(days=i), 50)
        _usage(rare, today - dt.timedelta(days=i), 1 if i % 3 == 0 else 0)
    _usage(steady, today, 250)  # 5 times: not more than 5 times
    _usage(rare, today, 60)  # 60 times its usual day, but under the floor of 100 calls
    assert attention.unusual_use(ws) == []
    TokenUsage.update(calls=251).where((TokenUsage.token == steady.id) & (TokenUsage.day == today)).execute()
    assert [f.detail["reason"] for f in attention.unusual_use(ws)] == ["volume"]


def test_a_members_request_is_on_the_admins_home_and_on_the_members(admin, browser):
    """A member's app request waits for an admin: it is a home-page item linked to Settings > MCP Server,
    and the member sees it on their own home."""
    from poggio.identity.app_access import set_app_policy
    from poggio.identity.oauth import OAuthService
    from poggio.records.audit import Actor
    from poggio.storage.models import Membership, OAuthGrant

    _seed()
    acme = Workspace.get(Workspace.slug == "acme")
    set_app_policy(acme, Actor.cli(), access="members")
    member = Membership.get((Membership.workspace == acme) & (Membership.role == "member")).user
    client = (
        OAuthService().register({"client_name": "Member's agent", "redirect_uris": ["http://127.0.0.1:9/cb"]}).client
    )
    OAuthGrant.create(
        workspace=acme, client=client, user=member, packs="accounts", resource="http://x/mcp", approval="pending"
    )
    found = attention.pending_app_requests(acme)
    assert [f.kind for f in found] == ["request"] and "Member's agent" in found[0].text
    page = admin.get("/").get_data(as_text=True)
    assert "Requests waiting for approval" in page and "/settings/mcp/#app-requests" in page
    browser.sign_in(member.email)
    assert "Member&#39;s agent" in browser.get("/").get_data(as_text=True)
