"""Token governance end to end through a real MCP server process (SQLite and PostgreSQL): every request
on the activity record and adding up with the per-day counters, network limits (and forwarded headers
believed only from a trusted proxy), per-token rate limits, the expiry warning in results' ``_meta``,
rotation with an overlap that ends to the second, OAuth grants on record and under the policy, pruning."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import httpx
import pytest
from helpers import Mcp, clear_of_the_minute_turn
from instances import BACKENDS, ServerProcess, drop_instance, make_instance

from poggio.commands import demo
from poggio.errors import InvalidInput
from poggio.identity.oauth import OAuthService
from poggio.identity.policy import set_policy
from poggio.identity.tokens import TokenRejected, TokenService, ip_allowed, networks
from poggio.records import activity
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import database, utcnow
from poggio.storage.models import Activity, ApiToken, GrantUsage, OAuthGrant, OAuthToken, TokenUsage, Workspace

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
META = "io.poggio/token-expiry"
CLI = Actor.cli()


def rpc(url: str, token: str, method: str = "tools/call", params: dict | None = None, headers=None) -> httpx.Response:
    if params is None and method == "tools/call":
        params = {"name": "search_accounts", "arguments": {"limit": 2}}
    return httpx.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}},
        headers={**HEADERS, "Authorization": f"Bearer {token}", **(headers or {})},
        timeout=20,
    )


def settle(instance, expected_rows: int, workspace_id: int, timeout: float = 10) -> list[Activity]:
    """The workspace's activity once the server's batch writer has written ``expected_rows`` rows."""
    deadline = time.monotonic() + timeout
    while True:
        with database.connection_context():
            rows = list(Activity.select().where(Activity.workspace == workspace_id).order_by(Activity.id))
        if len(rows) >= expected_rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


class Stack:
    def __init__(self, instance, server, acme, service):
        self.instance, self.server, self.acme, self.service = instance, server, acme, service
        self.url = server.mcp_url

    def token(self, name: str, **kw):
        with database.connection_context():
            return self.service.create(self.acme, f"{name} {time.monotonic_ns()}", CLI, **kw)

    def rows_of(self, token_id: int, expected: int, kind: str = "token") -> list[Activity]:
        deadline = time.monotonic() + 10
        while True:
            with database.connection_context():
                rows = list(
                    Activity.select()
                    .where((Activity.kind == kind) & (Activity.subject_id == token_id))
                    .order_by(Activity.at, Activity.id)
                )
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp(f"gov-{request.param}"), request.param)
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        acme = demo.build(registry, "acme", accounts=30, seed=5).workspace
    service = TokenService(known_packs=set(registry.names), rate_limit="1200/minute")
    server = ServerProcess(inst)
    yield Stack(inst, server, acme, service)
    server.stop()
    drop_instance(inst)


@pytest.fixture(autouse=True)
def _bound(request):
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").instance.activate()
    yield


def test_every_call_is_on_record_and_adds_up_with_the_counters(stack):
    issued = stack.token("recorded", packs="accounts")
    token = issued.plaintext
    assert rpc(stack.url, token).status_code == 200  # ok
    assert rpc(stack.url, token, params={"name": "search_accounts", "arguments": {"nope": 1}}).json()["result"][
        "isError"
    ]
    assert rpc(stack.url, token, params={"name": "get_revenue_summary", "arguments": {}}).json()["result"]["isError"]
    assert rpc(stack.url, token, "tools/list").status_code == 200
    Mcp(stack.url, token).call("get_account", {"domain": "example.com"})  # through the official client
    rows = stack.rows_of(issued.token.id, 6)
    outcomes = [(r.tool, r.outcome) for r in rows]
    assert ("search_accounts", "ok") in outcomes
    assert ("search_accounts", "tool_error") in outcomes  # an unknown argument
    assert ("get_revenue_summary", "refused") in outcomes  # outside the token's packs
    assert ("tools/list", "ok") in outcomes and ("get_account", "ok") in outcomes
    assert all(r.ip == "127.0.0.1" and r.latency_ms > 0 and r.workspace_id == stack.acme.id for r in rows)
    assert any((r.client or "").startswith("python-httpx") for r in rows)  # the User-Agent of a bare request
    assert any(r.client and "poggio-tests" in r.client for r in rows if r.tool == "get_account")  # MCP clientInfo
    # the per-day counters are written in the same flush: they add up to the record, call for call
    with database.connection_context():
        counted = {
            (u.tool): (u.calls, u.errors) for u in TokenUsage.select().where(TokenUsage.token == issued.token.id)
        }
    recorded = Counter(r.tool for r in rows)
    failed = Counter(r.tool for r in rows if r.outcome != "ok")
    assert counted == {tool: (recorded[tool], failed[tool]) for tool in recorded}


def test_a_timed_out_call_is_recorded_as_such(tmp_path):
    inst = make_instance(tmp_path / "slow", "sqlite")
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        acme = demo.build(registry, "acme", accounts=20, seed=2).workspace
        issued = TokenService().create(acme, "slow", CLI)
    server = ServerProcess(inst, extra_env={"POGGIO_TOOL_TIMEOUT_SECONDS": "0.000001"})
    try:
        answer = rpc(server.mcp_url, issued.plaintext).json()
        assert answer["result"]["isError"] and "took longer" in answer["result"]["content"][0]["text"]
        rows = settle(inst, 1, acme.id)
        assert [(r.tool, r.outcome) for r in rows] == [("search_accounts", "timed_out")]
    finally:
        server.stop()


def test_ip_outside_the_list_is_refused_with_a_reason_and_recorded_inside_served(stack):
    outside = stack.token("office only", allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    refused = rpc(stack.url, outside.plaintext)
    assert refused.status_code == 403
    body = refused.json()
    assert body["reason"] == "ip_not_allowed" and "127.0.0.1" in body["error_description"]
    # a forged X-Forwarded-For from an untrusted peer changes nothing
    assert rpc(stack.url, outside.plaintext, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 403
    inside = stack.token("loopback", allowed_ips="127.0.0.1/32, ::1")
    assert rpc(stack.url, inside.plaintext).status_code == 200
    rows = stack.rows_of(outside.token.id, 2)
    assert [(r.outcome, r.ip) for r in rows] == [("refused", "127.0.0.1")] * 2
    assert stack.rows_of(inside.token.id, 1)[0].outcome == "ok"


def test_forwarded_address_believed_only_from_a_trusted_proxy(stack):
    issued = stack.token("behind proxy", allowed_ips=["198.51.100.0/24"])
    server = ServerProcess(stack.instance, extra_env={"POGGIO_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        assert rpc(server.mcp_url, issued.plaintext, headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        assert rpc(server.mcp_url, issued.plaintext, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert rpc(server.mcp_url, issued.plaintext).status_code == 403  # the proxy's own address is not listed
    finally:
        server.stop()
    assert rpc(stack.url, issued.plaintext, headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 403
    ips = [r.ip for r in stack.rows_of(issued.token.id, 4)]
    assert ips.count("198.51.100.7") == 1 and "203.0.113.9" in ips


def test_networks_ipv4_and_ipv6():
    allowed = networks("10.0.0.0/8,2001:db8::/32")
    assert ip_allowed(allowed, "10.200.0.1") and ip_allowed(allowed, "2001:db8::5")
    assert ip_allowed(allowed, "::ffff:10.0.0.9")  # an IPv4 peer on a dual-stack socket
    assert not ip_allowed(allowed, "11.0.0.1") and not ip_allowed(allowed, "2001:db9::1")
    assert not ip_allowed(allowed, None) and not ip_allowed(allowed, "junk")
    assert ip_allowed(None, "anything")


def test_token_limits_are_checked_when_set(stack):
    with database.connection_context():
        with pytest.raises(InvalidInput, match="not an IP address"):
            stack.service.create(stack.acme, "bad net", CLI, allowed_ips="10.0.0.300/8")
        with pytest.raises(InvalidInput, match="below the installation's limit"):
            stack.service.create(stack.acme, "too fast", CLI, rate_limit="5000/minute")
        with pytest.raises(InvalidInput, match="such as 10/minute"):
            stack.service.create(stack.acme, "junk limit", CLI, rate_limit="fast please")


def test_per_token_rate_limit_below_the_default(stack):
    slow = stack.token("slow lane", rate_limit="3/minute")
    clear_of_the_minute_turn()
    answers = [rpc(stack.url, slow.plaintext) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    other = stack.token("fast lane")  # the installation's default limit still applies to the others
    assert all(rpc(stack.url, other.plaintext).status_code == 200 for _ in range(5))
    assert [r.outcome for r in stack.rows_of(slow.token.id, 4)] == ["ok", "ok", "ok", "rate_limited"]


def test_expiry_warning_in_the_results_meta(stack):
    soon = stack.token("soon", expires="3d")
    later = stack.token("later", expires="30d")
    result = rpc(stack.url, soon.plaintext).json()["result"]
    warning = result["_meta"][META]
    assert "stops working in 2 days" in warning["message"] or "stops working in 3 days" in warning["message"]
    assert warning["expires_at"].startswith(soon.token.expires_at.isoformat()[:16])
    assert META in rpc(stack.url, soon.plaintext, "tools/list").json()["result"]["_meta"]
    assert META not in (rpc(stack.url, later.plaintext).json()["result"].get("_meta") or {})
    # the official client sees it as the result's meta
    assert META in Mcp(stack.url, soon.plaintext).call("get_revenue_summary", {}).meta


def test_rotation_overlap_both_work_then_the_old_stops_exactly(stack):
    issued = stack.token("rotating")
    old = issued.plaintext
    with database.connection_context():
        token = ApiToken.get_by_id(issued.token.id)
        new = stack.service.rotate(token, CLI, grace="1h").plaintext
        token = ApiToken.get_by_id(issued.token.id)
    assert rpc(stack.url, old).status_code == 200 and rpc(stack.url, new).status_code == 200
    # the old secret warns that it is about to stop
    assert "replaced by a rotation" in rpc(stack.url, old).json()["result"]["_meta"][META]["message"]
    end = token.previous_expires_at
    assert end - token.rotated_at == dt.timedelta(hours=1)
    with database.connection_context():
        assert stack.service.verify(old, now=end - dt.timedelta(seconds=1)).old_secret
        with pytest.raises(TokenRejected):
            stack.service.verify(old, now=end)
        assert not stack.service.verify(new, now=end).old_secret
        # on the server: move the window's end two seconds ahead and watch it close
        end = utcnow() + dt.timedelta(seconds=2)
        ApiToken.update(previous_expires_at=end).where(ApiToken.id == token.id).execute()
    while utcnow() < end - dt.timedelta(seconds=1):
        time.sleep(0.05)
    assert rpc(stack.url, old).status_code == 200
    while utcnow() < end:
        time.sleep(0.05)
    assert rpc(stack.url, old).status_code == 401
    assert rpc(stack.url, new).status_code == 200
    # rotating again with no grace ends the old secret at once
    with database.connection_context():
        newest = stack.service.rotate(ApiToken.get_by_id(token.id), CLI, grace="none").plaintext
    assert rpc(stack.url, new).status_code == 401 and rpc(stack.url, newest).status_code == 200


def test_oauth_grant_on_record_and_under_the_policy(stack):
    with database.connection_context():
        ws = Workspace.create(slug=f"pol{time.monotonic_ns() % 10**8}", name="Policy Co", mcp_enabled=True)
        oauth = OAuthService(known_packs={"accounts", "contacts", "revenue"})
        set_policy(ws, CLI, max_lifetime="30d")
        issued = oauth.create_confidential(ws, "sync", CLI, resource=stack.url)
        grant = oauth.standing_grant(issued.client)
        # a client_credentials grant lives no longer than the workspace's maximum
        assert grant.expires_at is not None and grant.expires_at - utcnow() <= dt.timedelta(days=30)
        access = oauth.issue_tokens(grant, refresh=False)["access_token"]
    answer = rpc(stack.url, access)
    assert answer.status_code == 200 and META not in (answer.json()["result"].get("_meta") or {})
    rows = settle(stack.instance, 1, ws.id)
    assert [(r.kind, r.subject_id, r.outcome) for r in rows] == [("grant", grant.id, "ok")]
    with database.connection_context():
        assert GrantUsage.get(GrantUsage.grant == grant.id).calls == 1
        # an app whose access ends within 7 days is warned in every result
        OAuthGrant.update(expires_at=utcnow() + dt.timedelta(days=3)).where(OAuthGrant.id == grant.id).execute()
    warning = rpc(stack.url, access).json()["result"]["_meta"][META]
    assert warning["kind"] == "grant" and "connected app's access stops working" in warning["message"]
    with database.connection_context():
        # once past its maximum, the grant stops, and client_credentials gets no new token
        OAuthGrant.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(OAuthGrant.id == grant.id).execute()
        assert oauth.standing_grant(issued.client) is None
    assert rpc(stack.url, access).status_code == 401


def test_tightened_policy_shortens_tokens_and_grants(stack):
    with database.connection_context():
        ws = Workspace.create(slug=f"tight{time.monotonic_ns() % 10**8}", name="Tight", mcp_enabled=True)
        forever = stack.service.create(ws, "forever", CLI, expires="never").token
        short = stack.service.create(ws, "short", CLI, expires="5d").token
        oauth = OAuthService(known_packs={"accounts"})
        grant = oauth.standing_grant(oauth.create_confidential(ws, "app", CLI, resource=stack.url).client)
        _, capped = set_policy(ws, CLI, max_lifetime="10d")
        assert capped == 2  # the token without expiry and the grant; the 5-day token is within it
        forever, short, grant = (
            ApiToken.get_by_id(forever.id),
            ApiToken.get_by_id(short.id),
            OAuthGrant.get_by_id(grant.id),
        )
        assert forever.expiry_capped_at and grant.expiry_capped_at and short.expiry_capped_at is None
        assert abs(forever.expires_at - (utcnow() + dt.timedelta(days=10))) < dt.timedelta(seconds=5)
        with pytest.raises(InvalidInput, match="requires an expiry"):
            stack.service.create(ws, "never again", CLI, expires="never")
        with pytest.raises(InvalidInput, match="at most 10 days"):
            stack.service.create(ws, "too long", CLI, expires="30d")
        with pytest.raises(InvalidInput, match="at most 10 days"):
            stack.service.set_expiry(short, "60d", CLI)
        ws = Workspace.get_by_id(ws.id)
        assert stack.service.create(ws, "by default", CLI).token.expires_at <= utcnow() + dt.timedelta(days=10)


def test_pruning_keeps_the_retention(tmp_path):
    """The MCP server prunes as it starts (and every hour): the activity record past its retention,
    and the OAuth rows no longer of use (which rows: tests/portal/test_oauth.py)."""
    inst = make_instance(tmp_path / "prune", "sqlite")
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
        now = utcnow()
        Activity.insert_many(
            [
                {
                    "workspace": ws.id,
                    "kind": "token",
                    "subject_id": 1,
                    "at": now - dt.timedelta(days=d, hours=1),
                    "tool": "ping",
                    "outcome": "ok",
                }
                for d in (0, 1, 2, 5, 40)
            ]
        ).execute()
        robot = OAuthService(known_packs={"accounts"}).create_confidential(ws, "Robot", Actor.cli()).client
        grant = OAuthGrant.get(OAuthGrant.client == robot)
        for age in (dt.timedelta(days=2), dt.timedelta(hours=1)):
            OAuthService().issue_tokens(grant, refresh=False)
            OAuthToken.update(access_expires_at=now - age).where(OAuthToken.access_expires_at > now - age).execute()
    server = ServerProcess(inst, extra_env={"POGGIO_ACTIVITY_RETENTION_DAYS": "2"})
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with db.connection_context():
                left = Activity.select().count(), OAuthToken.select().count()
            if left == (2, 1):
                break
            time.sleep(0.1)
        # today's and yesterday's activity; 2 days and 1 hour ago is past the retention. The access
        # token expired an hour ago is kept a day, the one expired two days ago is gone.
        assert left == (2, 1)
    finally:
        server.stop()


def test_activity_filters_and_cursor_paging(instance):
    ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    start = dt.datetime(2026, 11, 1)
    Activity.insert_many(
        [
            {
                "workspace": ws.id,
                "kind": "token",
                "subject_id": i % 3,
                "at": start + dt.timedelta(hours=i),
                "tool": ("ping", "get_account")[i % 2],
                "outcome": ("ok", "refused", "ok", "ok", "rate_limited")[i % 5],
            }
            for i in range(120)
        ]
    ).execute()
    seen, cursor = [], None
    while True:
        page, cursor = activity.page(ws, activity.Filters(), cursor, limit=50)
        seen += page
        if cursor is None:
            break
    assert len(seen) == 120 and [r.at for r in seen] == sorted((r.at for r in seen), reverse=True)
    refused = activity.page(ws, activity.Filters.parse(outcome="refused"), limit=500)[0]
    assert len(refused) == 24 and {r.outcome for r in refused} == {"refused"}
    mine = activity.page(ws, activity.Filters.parse(kind="token", subject_id=1, tool="get_account"), limit=500)[0]
    assert mine and all(r.subject_id == 1 and r.tool == "get_account" for r in mine)
    day = activity.page(ws, activity.Filters.parse(since="2026-11-02", until="2026-11-02"), limit=500)[0]
    assert len(day) == 24 and all(r.at.date() == dt.date(2026, 11, 2) for r in day)
    for bad in ({"outcome": "meh"}, {"since": "yesterday-ish"}, {"until": "2026-13-01"}):
        with pytest.raises(InvalidInput):
            activity.Filters.parse(**bad)
    with pytest.raises(InvalidInput):
        activity.page(ws, activity.Filters(), "not-a-cursor")
