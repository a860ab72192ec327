"""Admins pick tools one by one (issue 30 §2), end to end: a real MCP server process, the official MCP
client over real HTTP, on SQLite and on PostgreSQL. A tool switched off in a workspace is absent from
``tools/list`` and refused by name (as an unknown tool is) from the very next request, for API tokens
and connected apps alike; a token or a grant narrowed to named tools sees only those."""

from __future__ import annotations

import secrets

import httpx
import pytest
from helpers import Mcp
from instances import BACKENDS
from stacks import acme_and_globex

from poggio.commands import demo
from poggio.errors import InvalidInput
from poggio.identity.oauth import OAuthService
from poggio.identity.switches import SwitchService, clean_narrowing, visible_tools
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import get_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.storage.db import bind
from poggio.storage.models import AuditEvent, OAuthCode, User

READ_TOOLS = {
    "search_accounts",
    "get_account",
    "search_contacts",
    "get_contact",
    "get_revenue_summary",
    "list_opportunities",
}
MODERN = "2026-07-28"


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    def tokens(service, cli, acme, globex):
        narrowing = TokenService(known_packs=service.known_packs, registry=PackRegistry.load())
        return {
            "acme": service.create(acme, "acme all", cli).plaintext,
            "acme_writer": service.create(acme, "acme writer", cli, packs="accounts:write").plaintext,
            "acme_two": narrowing.create(
                acme, "acme two tools", cli, packs="accounts,revenue", tools="get_account,list_opportunities"
            ).plaintext,
            "globex": service.create(globex, "globex all", cli).plaintext,
        }

    yield from acme_and_globex(tmp_path_factory.mktemp(f"switches-{request.param}"), request.param, tokens, 20, 3)


@pytest.fixture
def db(stack):
    database = bind(stack.instance.database_url)
    with database.connection_context():
        yield database


def grant_token(stack, packs: dict[str, str], tools: str | None = None) -> str:
    """An access token of a connected app approved by acme's admin for ``packs`` (and ``tools``)."""
    service = OAuthService()
    client = service.register(
        {"client_name": "Switch app", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    ).client
    user = User.get(User.email == demo.DEMO_ADMIN)
    service.issue_code(
        code=secrets.token_urlsafe(32),
        client=client,
        user=user,
        workspace=get_workspace("acme"),
        packs=packs,
        redirect_uri="http://127.0.0.1:9/cb",
        resource=stack.url,
        code_challenge="x" * 43,
        code_challenge_method="S256",
        grant_days=30,
        actor=Actor(user),
        tools=tools,
    )
    grant = service.grant_from_code(OAuthCode.select().order_by(OAuthCode.id.desc()).first())
    return service.issue_tokens(grant, refresh=False)["access_token"]


def text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_tool_switched_off_is_gone_from_the_next_request_for_tokens_and_apps(stack, db, mode):
    switches = SwitchService(stack.registry)
    acme = get_workspace("acme")
    app = Mcp(stack.url, grant_token(stack, {"accounts": "read", "revenue": "read"}), mode)
    token, globex = stack.mcp("acme", mode), stack.mcp("globex", mode)
    assert set(token.tool_names()) == READ_TOOLS  # listed once: the list is cached per scope
    assert set(app.tool_names()) == {"search_accounts", "get_account", "get_revenue_summary", "list_opportunities"}
    unknown = text(token.call("no_such_tool", {}))
    assert unknown == "Unknown tool: no_such_tool"
    try:
        assert switches.switch(acme, Actor.cli(), off=["get_account"]) == [("get_account", False)]
        assert set(token.tool_names()) == READ_TOOLS - {"get_account"}
        assert "get_account" not in app.tool_names()
        for client in (token, app):
            refused = client.call("get_account", {"domain": "example.com"})
            assert refused.is_error and text(refused) == "Unknown tool: get_account"  # as an unknown tool
        assert "get_account" in globex.tool_names()  # another workspace's switches are its own
        assert not globex.call("get_account", {"domain": "example.com"}).is_error
    finally:
        switches.switch(acme, Actor.cli(), on=["get_account"])
    assert set(token.tool_names()) == READ_TOOLS  # back on from the next request
    found = token.call("get_account", {"domain": "example.com"})
    assert not found.is_error and "example.com" in text(found)
    actions = [e.target for e in AuditEvent.select().where(AuditEvent.action == "workspace.tool_switched")]
    assert actions[-2:] == ["get_account", "get_account"]


def test_a_write_tool_switched_off_is_refused_before_it_writes(stack, db):
    switches = SwitchService(stack.registry)
    acme = get_workspace("acme")
    writer = stack.mcp("acme_writer")
    assert "update_account" in writer.tool_names()
    try:
        switches.switch(acme, Actor.cli(), off=["update_account"])
        assert "update_account" not in writer.tool_names() and "create_account" in writer.tool_names()
        refused = writer.call("update_account", {"domain": "example.com", "employees": 1})
        assert refused.is_error and text(refused) == "Unknown tool: update_account"
        shown = writer.call("get_account", {"domain": "example.com"})
        assert "employees: 1\n" not in text(shown)
    finally:
        switches.switch(acme, Actor.cli(), on=["update_account"])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_token_narrowed_to_tools_sees_and_calls_only_those(stack, db, mode):
    narrowed = stack.mcp("acme_two", mode)
    assert sorted(narrowed.tool_names()) == ["get_account", "list_opportunities"]
    assert not narrowed.call("get_account", {"domain": "example.com"}).is_error
    for name in ("search_accounts", "get_revenue_summary", "search_contacts"):
        refused = narrowed.call(name, {})
        assert refused.is_error and text(refused) == f"Unknown tool: {name}"
    # a switch applies within a narrowing too
    switches = SwitchService(stack.registry)
    try:
        switches.switch(get_workspace("acme"), Actor.cli(), off=["list_opportunities"])
        assert narrowed.tool_names() == ["get_account"]
    finally:
        switches.switch(get_workspace("acme"), Actor.cli(), on=["list_opportunities"])


def test_a_grant_narrowed_to_tools_sees_only_those(stack, db):
    app = Mcp(stack.url, grant_token(stack, {"accounts": "write"}, tools="get_account,update_account"))
    assert sorted(app.tool_names()) == ["get_account", "update_account"]
    refused = app.call("search_accounts", {"query": "a"})
    assert refused.is_error and text(refused) == "Unknown tool: search_accounts"


def test_the_modern_list_says_it_may_not_be_kept(stack):
    """2026-07-28 ``tools/list`` carries ``ttlMs``/``cacheScope``: a list an admin can change at any
    moment and that differs per token is immediately stale and private."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "switch-test", "version": "1"},
    }
    for _ in range(2):  # the SDK's answer, then the lean path's from its cache
        response = httpx.post(
            stack.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": envelope}},
            headers={
                "Authorization": f"Bearer {stack.tokens['acme']}",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": MODERN,
                "Mcp-Method": "tools/list",
            },
            timeout=20,
        )
        result = response.json()["result"]
        assert result["ttlMs"] == 0 and result["cacheScope"] == "private", result


def test_switches_and_narrowing_refuse_bad_names(stack, db):
    switches = SwitchService(stack.registry)
    acme = get_workspace("acme")
    with pytest.raises(InvalidInput, match="unknown tool 'get_acount'"):
        switches.switch(acme, Actor.cli(), off=["get_acount"])
    with pytest.raises(InvalidInput, match="both off and on: get_account"):
        switches.switch(acme, Actor.cli(), off=["get_account"], on=["get_account"])
    with pytest.raises(InvalidInput, match="unknown tool"):
        clean_narrowing("get_account,frobnicate", stack.registry, {"accounts": "read"})
    with pytest.raises(InvalidInput, match="outside the chosen packs: get_contact"):
        clean_narrowing("get_account,get_contact", stack.registry, {"accounts": "read"})
    with pytest.raises(InvalidInput, match="outside the chosen packs: update_account"):
        clean_narrowing("update_account", stack.registry, {"accounts": "read"})
    assert clean_narrowing(" get_account , ", stack.registry, None) == "get_account"
    assert switches.switch(acme, Actor.cli(), on=["get_account"]) == []  # on already: nothing changes


def test_visible_tools_is_the_one_decision(stack):
    from poggio.identity.scopes import PackScope

    names = {t.name for t in visible_tools(stack.registry, PackScope(None))}
    assert names == READ_TOOLS
    scope = PackScope(frozenset({"accounts"}), frozenset({"accounts"}), frozenset({"get_account", "add_note"}))
    assert {t.name for t in visible_tools(stack.registry, scope)} == {"get_account", "add_note"}
    off = PackScope(frozenset({"accounts"}), off=frozenset({"get_account"}))
    assert {t.name for t in visible_tools(stack.registry, off)} == {"search_accounts"}


def rpc(stack, token: str, method: str, params: dict) -> dict:
    response = httpx.post(
        stack.url,
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_app_view_of_a_tool_switched_off_is_not_found(stack, db):
    """issue 30: "an app resource for a tool that is off: the protocol's error". The account card is
    get_account's MCP App view: with get_account off (or narrowed away) it is neither listed nor read."""
    card = "ui://accounts/account-card.html"
    token = stack.tokens["acme"]
    assert card in {r["uri"] for r in rpc(stack, token, "resources/list", {})["result"]["resources"]}
    assert "result" in rpc(stack, token, "resources/read", {"uri": card})
    narrowed = rpc(stack, stack.tokens["acme_two"], "resources/read", {"uri": card})  # get_account is in
    assert "result" in narrowed
    switches = SwitchService(stack.registry)
    try:
        switches.switch(get_workspace("acme"), Actor.cli(), off=["get_account"])
        listed = {r["uri"] for r in rpc(stack, token, "resources/list", {})["result"]["resources"]}
        assert card not in listed and "ui://revenue/pipeline.html" in listed
        refused = rpc(stack, token, "resources/read", {"uri": card})
        assert refused["error"]["code"] == -32002 and refused["error"]["message"] == f"Resource not found: {card}"
    finally:
        switches.switch(get_workspace("acme"), Actor.cli(), on=["get_account"])
    assert "result" in rpc(stack, token, "resources/read", {"uri": card})
    pipeline = rpc(stack, stack.tokens["acme_two"], "resources/read", {"uri": "ui://revenue/pipeline.html"})
    assert pipeline["error"]["code"] == -32002  # acme_two may not call get_revenue_summary: no view of it
