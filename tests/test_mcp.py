"""The MCP server end to end: a real server process, the official MCP client over real HTTP, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import httpx
import pytest
from helpers import Mcp
from instances import BACKENDS
from stacks import acme_and_globex

from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.storage.db import bind
from poggio.storage.models import ApiToken

ALL_TOOLS = {
    "search_accounts",
    "get_account",
    "search_contacts",
    "get_contact",
    "get_revenue_summary",
    "list_opportunities",
}

METRICS_TOKEN = "metrics-token-of-the-tests"


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    def tokens(service, cli, acme, globex):
        initrode = create_workspace("initrode", "Initrode", False, cli)
        return {
            "acme": service.create(acme, "acme all", cli).plaintext,
            "acme_revenue": service.create(acme, "acme revenue", cli, packs="revenue").plaintext,
            "globex": service.create(globex, "globex all", cli).plaintext,
            "initrode": service.create(initrode, "initrode", cli).plaintext,
        }

    yield from acme_and_globex(
        tmp_path_factory.mktemp(f"mcp-{request.param}"),
        request.param,
        tokens,
        accounts=60,
        seed=7,
        extra_env={"POGGIO_METRICS_TOKEN": METRICS_TOKEN},
    )


@pytest.fixture(autouse=True)
def _bound(request):
    """Tests of this module talk to the stack's database from the test process too."""
    if "stack" in request.fixturenames:
        st = request.getfixturevalue("stack")
        db = bind(st.instance.database_url)
        with db.connection_context():
            yield
    else:
        yield


def text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


# -- discovery and tools ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_listed_with_schemas_and_annotations(stack, mode):
    tools = {t.name: t for t in stack.mcp("acme", mode).tools()}
    assert set(tools) == ALL_TOOLS
    search = tools["search_accounts"]
    assert search.annotations.read_only_hint is True
    props = search.input_schema["properties"]
    assert {"query", "industry", "limit", "cursor"} <= set(props)
    assert "workspace" not in json.dumps(search.input_schema).lower()  # the token alone decides
    assert props["limit"]["maximum"] == 100 and props["query"]["description"]
    assert tools["get_account"].output_schema is not None


def test_pack_restricted_token_sees_and_calls_only_its_pack(stack):
    client = stack.mcp("acme_revenue")
    assert set(client.tool_names()) == {"get_revenue_summary", "list_opportunities"}
    refused = client.call("get_account", {"domain": "example.com"})
    assert refused.is_error and "not available to this token" in text(refused)
    summary = client.call("get_revenue_summary", {"account_domain": "example.com"})
    assert not summary.is_error


def test_tool_lists_stay_per_scope_when_served_again(stack):
    """tools/list answers are kept per pack scope: asking in turns never hands one scope's list to another."""
    for _ in range(3):
        assert set(stack.mcp("acme_revenue").tool_names()) == {"get_revenue_summary", "list_opportunities"}
        assert set(stack.mcp("acme").tool_names()) == ALL_TOOLS


def test_get_account_aggregates_every_pack(stack):
    result = stack.mcp("acme").call("get_account", {"domain": "https://www.Example.com/"})
    assert not result.is_error, text(result)
    data = result.structured_content
    assert data["account"]["domain"] == "example.com" and data["account"]["name"] == "Example Corp"
    assert set(data["sections"]) == {"contacts", "revenue"}
    assert data["sections"]["contacts"]["data"]["total"] == 3
    assert data["sections"]["revenue"]["data"]["opportunities"] == 4
    body = text(result)
    assert "Example Corp" in body and "## Contacts (3)" in body and "## Revenue" in body


def test_profile_sections_follow_the_token_scope(stack):
    """A revenue-only token cannot call get_account at all; an all-packs token sees all sections."""
    result = stack.mcp("acme").call("get_account", {"domain": "example.com"})
    assert "Globex" not in text(result) and "Globexperson" not in text(result)


def test_search_and_pagination_walk_every_account_once(stack):
    client = stack.mcp("acme")
    seen, cursor, pages = [], None, 0
    while True:
        args = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = client.call("search_accounts", args).structured_content
        seen += [a["domain"] for a in page["accounts"]]
        cursor, pages = page["next_cursor"], pages + 1
        if not cursor:
            break
    assert len(seen) == 60 == len(set(seen)) and pages == 9
    names = [
        a["name"]
        for a in client.call("search_accounts", {"query": "acme", "limit": 100}).structured_content["accounts"]
    ]
    assert names and all("acme" in n.lower() for n in names)


def test_contacts_and_revenue_tools(stack):
    client = stack.mcp("acme")
    contacts = client.call("search_contacts", {"account_domain": "example.com"}).structured_content["contacts"]
    assert len(contacts) == 3 and all(c["account_domain"] == "example.com" for c in contacts)
    one = client.call("get_contact", {"email": contacts[0]["email"].upper()})
    assert one.structured_content["email"] == contacts[0]["email"]
    opps = client.call("list_opportunities", {"account_domain": "example.com", "limit": 2}).structured_content
    assert len(opps["opportunities"]) == 2 and opps["next_cursor"]
    dates = [o["close_date"] for o in opps["opportunities"]]
    assert dates == sorted(dates)
    summary = client.call("get_revenue_summary", {}).structured_content
    assert summary["opportunities"] > 0 and summary["currencies"]


@pytest.mark.parametrize(
    "workspace,args",
    [
        ("acme", {}),
        ("acme", {"closing_after": "2026-01-01"}),
        ("acme", {"closing_before": "2025-06-30"}),
        ("acme", {"closing_after": "2025-03-01", "closing_before": "2026-03-01"}),
        ("globex", {}),
    ],
)
def test_workspace_revenue_summary_adds_up_its_opportunities(stack, workspace, args):
    """The workspace-wide summary reads the day totals kept as opportunities are written (demo and
    CSV import); it must give what adding up the opportunities themselves gives."""
    from poggio.storage.models import Workspace
    from poggio_revenue.models import Opportunity

    ws = Workspace.get(Workspace.slug == workspace)
    rows = Opportunity.select().where(Opportunity.workspace == ws)
    if "closing_after" in args:
        rows = rows.where(Opportunity.close_date >= dt.date.fromisoformat(args["closing_after"]))
    if "closing_before" in args:
        rows = rows.where(Opportunity.close_date <= dt.date.fromisoformat(args["closing_before"]))
    expected: dict = {}
    for o in rows:
        count, amount = expected.get((o.currency, o.stage), (0, 0))
        expected[(o.currency, o.stage)] = (count + 1, amount + o.amount)
    summary = stack.mcp(workspace).call("get_revenue_summary", args).structured_content
    got = {
        (c["currency"], stage): (t["count"], Decimal(t["amount"]))
        for c in summary["currencies"]
        for stage, t in c["stages"].items()
        if t["count"]
    }
    assert expected and got == expected and summary["opportunities"] == sum(n for n, _ in expected.values())


@pytest.mark.parametrize(
    "tool,args,field",
    [
        ("search_accounts", {"limit": 0}, "limit"),
        ("search_accounts", {"limit": "many"}, "limit"),
        ("search_accounts", {"country": "Germany"}, "country"),
        ("get_account", {}, "domain"),
        ("get_account", {"domain": "nope.example"}, "domain"),
        ("get_contact", {"email": "nobody@nowhere.example"}, "email"),
        ("list_opportunities", {"stage": "dreaming"}, "stage"),
        ("list_opportunities", {"closing_after": "2026-05-01", "closing_before": "2026-01-01"}, "closing_before"),
        ("get_revenue_summary", {"closing_after": "yesterday"}, "closing_after"),
        ("search_accounts", {"cursor": "garbage"}, "cursor"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_field(stack, tool, args, field):
    result = stack.mcp("acme").call(tool, args)
    assert result.is_error
    assert field in text(result)
    assert "Traceback" not in text(result)


# -- isolation -------------------------------------------------------------------------------------
GLOBEX_ONLY = ["Globex", "Zorblax", "zorblax", "Globexperson", "Quentin", "987654", "111111", "NOK", "Aerospace"]


def test_workspaces_never_see_each_others_rows(stack):
    acme = stack.mcp("acme")
    probes = [
        ("get_account", {"domain": "example.com"}),
        ("get_account", {"domain": "zorblax.example"}),
        ("search_accounts", {"query": "zorblax"}),
        ("search_accounts", {"query": "globex"}),
        ("search_accounts", {"industry": "Aerospace"}),
        ("search_contacts", {"query": "quentin"}),
        ("search_contacts", {"account_domain": "zorblax.example"}),
        ("get_contact", {"email": "quentin.zorblax@zorblax.example"}),
        ("get_contact", {"email": "hidden.person@example.com"}),
        ("list_opportunities", {"account_domain": "zorblax.example"}),
        ("list_opportunities", {"min_amount": 900000}),
        ("get_revenue_summary", {}),
        ("get_revenue_summary", {"account_domain": "example.com"}),
    ]
    for (tool, args), result in zip(probes, acme.calls(probes), strict=True):
        blob = text(result) + json.dumps(result.structured_content or {})
        asked = json.dumps(args).lower()
        for secret in GLOBEX_ONLY:
            if secret.lower() not in asked:  # an error message may echo what was asked, nothing more
                assert secret not in blob, (tool, args, secret)
    # And Globex sees its own data, not Acme's.
    mine = stack.mcp("globex").call("get_account", {"domain": "example.com"}).structured_content
    assert mine["account"]["name"] == "Globex Example Division"
    assert mine["sections"]["contacts"]["data"]["contacts"][0]["last_name"] == "Globexperson"


def test_cursor_from_another_workspace_or_query_is_refused(stack):
    globex_cursor = stack.mcp("globex").call("search_accounts", {"limit": 1}).structured_content["next_cursor"]
    acme = stack.mcp("acme")
    stolen = acme.call("search_accounts", {"limit": 1, "cursor": globex_cursor})
    assert stolen.is_error and "cursor" in text(stolen)
    own = acme.call("search_accounts", {"limit": 1}).structured_content["next_cursor"]
    other_query = acme.call("search_accounts", {"limit": 1, "query": "acme", "cursor": own})
    assert other_query.is_error and "cursor" in text(other_query)
    other_tool = acme.call("search_contacts", {"limit": 1, "cursor": own})
    assert other_tool.is_error
    body, sig = own.split(".")
    tampered = acme.call("search_accounts", {"limit": 1, "cursor": body[:-2] + "AA." + sig})
    assert tampered.is_error
    assert not acme.call("search_accounts", {"limit": 1, "cursor": own}).is_error


# -- authentication ------------------------------------------------------------------------------------
def post(stack, headers: dict[str, str], body: dict | None = None) -> httpx.Response:
    return httpx.post(
        stack.url,
        json=body or {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream", **headers},
        timeout=10,
    )


@pytest.mark.parametrize(
    "header,reason",
    [
        ({}, "missing"),
        ({"Authorization": "Bearer"}, "missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing"),  # another scheme: no bearer token (RFC 6750 3.1)
        ({"Authorization": "Bearer not-a-token"}, "malformed"),
        ({"Authorization": "Bearer pgo_" + "A" * 33}, "malformed"),  # checksum does not match
    ],
)
def test_missing_or_malformed_token_is_401_with_challenge(stack, header, reason):
    response = post(stack, header)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["reason"] == reason


def test_unknown_revoked_and_expired_tokens_get_the_same_401(stack):
    from poggio.security.token_format import generate

    inst_tokens = TokenService()
    acme = ApiToken.select().where(ApiToken.name == "acme all").get().workspace
    expired = inst_tokens.create(acme, "soon expired", Actor.cli(), expires="1d")
    ApiToken.update(expires_at=dt.datetime(2020, 1, 1)).where(ApiToken.id == expired.token.id).execute()
    revoked = inst_tokens.create(acme, "to revoke", Actor.cli())
    inst_tokens.revoke(revoked.token, Actor.cli())
    bodies = []
    for token in (generate(), expired.plaintext, revoked.plaintext):
        response = post(stack, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]
        bodies.append(response.json())
    assert bodies[0] == bodies[1] == bodies[2]


def test_mcp_client_sees_401_for_a_bad_token(stack):
    assert Mcp(stack.url, "pgo_" + "x" * 33).status_of_failure() == 401
    assert Mcp(stack.url, None).status_of_failure() == 401


def test_workspace_without_entitlement_is_403(stack):
    response = post(stack, {"Authorization": f"Bearer {stack.tokens['initrode']}"})
    assert response.status_code == 403
    assert "entitlement" in response.json()["error_description"]
    assert stack.mcp("initrode").status_of_failure() == 403


def test_revocation_holds_on_the_very_next_call(stack):
    service = TokenService()
    acme = ApiToken.select().where(ApiToken.name == "acme all").get().workspace
    issued = service.create(acme, "revoke me live", Actor.cli())
    client = Mcp(stack.url, issued.plaintext)
    assert not client.call("search_accounts", {"limit": 1}).is_error
    service.revoke(issued.token, Actor.cli())
    assert client.status_of_failure() == 401


def test_entitlement_withdrawn_holds_on_the_very_next_call(stack):
    from poggio.identity.workspaces import get_workspace, set_entitlement

    ws = create_workspace(f"temp-{stack.instance.backend}", "Temp", True, Actor.cli())
    client = Mcp(stack.url, TokenService().create(ws, "t", Actor.cli()).plaintext)
    assert client.status_of_failure() is None
    set_entitlement(get_workspace(ws.slug), False, Actor.cli())
    assert client.status_of_failure() == 403


def test_usage_and_last_use_are_recorded(stack):
    service = TokenService()
    acme = ApiToken.select().where(ApiToken.name == "acme all").get().workspace
    issued = service.create(acme, "usage counter", Actor.cli())
    client = Mcp(stack.url, issued.plaintext)
    client.calls([("search_accounts", {"limit": 1})] * 3 + [("get_account", {"domain": "missing.example"})])
    from poggio.storage.models import TokenUsage

    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
    while dt.datetime.now() < deadline:
        rows = {u.tool: (u.calls, u.errors) for u in TokenUsage.select().where(TokenUsage.token == issued.token.id)}
        if rows.get("search_accounts") == (3, 0) and rows.get("get_account") == (1, 1):
            break
        import time

        time.sleep(0.2)
    assert rows["search_accounts"] == (3, 0) and rows["get_account"] == (1, 1)
    token = ApiToken.get_by_id(issued.token.id)
    assert token.last_used_at is not None and token.last_used_ip == "127.0.0.1"
    assert token.last_used_client == "poggio-tests 1.2.3"


def test_health_ready_and_metrics(stack):
    base = stack.server.url
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}  # status only: anyone may ask
    metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "poggio_mcp_requests_total" in metrics and "poggio_mcp_auth_failures_total" in metrics


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_server_name_is_the_product_name(stack, mode):
    import anyio
    from helpers import mcp_client

    async def main():
        async with mcp_client(stack.url, stack.tokens["acme"], mode=mode) as client:
            return client.server_info.name

    assert anyio.run(main) == "Poggio"


def test_spoofed_host_or_origin_is_refused(stack):
    token = {"Authorization": f"Bearer {stack.tokens['acme']}"}
    assert post(stack, {**token, "Host": "evil.example"}).status_code in (403, 421)
    assert post(stack, {**token, "Origin": "https://evil.example"}).status_code == 403
    assert post(stack, token).status_code == 200
