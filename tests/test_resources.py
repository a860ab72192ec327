"""Resources, resource templates, subscriptions and MCP App views of the built-in packs, with the
Python SDK's client over real HTTP in both protocol generations (``auto`` negotiates 2026-07-28,
``legacy`` the 2025-11-25 handshake)."""

from __future__ import annotations

import json

import pytest
from instances import BACKENDS
from mcp.shared.exceptions import MCPError
from stacks import acme_and_globex

from poggio.identity.workspaces import create_workspace
from poggio.storage.db import bind

MODES = ["auto", "legacy"]
NOT_FOUND = {"auto": -32602, "legacy": -32002}  # 2026-07-28 retired -32002 for invalid params


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    def tokens(service, cli, acme, globex):
        empty = create_workspace("initrode", "Initrode", False, cli)
        return {
            "acme": service.create(acme, "acme all", cli).plaintext,
            "acme_revenue": service.create(acme, "acme revenue", cli, packs="revenue").plaintext,
            "globex": service.create(globex, "globex all", cli).plaintext,
            "initrode": service.create(empty, "initrode", cli).plaintext,
        }

    yield from acme_and_globex(tmp_path_factory.mktemp(f"res-{request.param}"), request.param, tokens, 130, seed=7)


@pytest.fixture(autouse=True)
def _bound(stack):
    with bind(stack.instance.database_url).connection_context():
        yield


def run(stack, key: str, mode: str, fn):
    return stack.mcp(key, mode)._run(fn)


def error_of(stack, key: str, mode: str, fn) -> MCPError:
    with pytest.raises(BaseException) as caught:  # the client may wrap it in an exception group
        run(stack, key, mode, fn)
    exc = caught.value
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, MCPError), repr(exc)
    return exc


@pytest.mark.parametrize("mode", MODES)
def test_templates_and_static_resources_are_listed_per_scope(stack, mode):
    async def go(c):
        templates = (await c.list_resource_templates()).resource_templates
        first = await c.list_resources()
        return {t.uri_template: t for t in templates}, first, c.server_capabilities

    templates, first, capabilities = run(stack, "acme", mode, go)
    assert set(templates) == {"poggio://accounts/{domain}", "poggio://accounts/{domain}/contacts{?cursor}"}
    assert templates["poggio://accounts/{domain}"].mime_type == "application/json"
    static = {r.uri: r for r in first.resources if not r.uri.startswith("poggio://accounts/")}
    assert set(static) == {"poggio://revenue/summary", "ui://accounts/account-card.html", "ui://revenue/pipeline.html"}
    assert static["ui://revenue/pipeline.html"].mime_type == "text/html;profile=mcp-app"
    # updates cannot reach a client of a stateless server: the capability says so
    assert capabilities.resources is not None and not capabilities.resources.subscribe

    templates, first, _ = run(stack, "acme_revenue", mode, go)
    assert templates == {}
    assert {r.uri for r in first.resources} == {"poggio://revenue/summary", "ui://revenue/pipeline.html"}
    assert first.next_cursor is None


def test_resources_list_pages_every_account_once(stack):
    async def go(c):
        uris, cursor, pages = [], None, 0
        while True:
            page = await c.list_resources(cursor=cursor)
            uris += [r.uri for r in page.resources]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                return uris, pages

    uris, pages = run(stack, "acme", "auto", go)
    accounts = [u for u in uris if u.startswith("poggio://accounts/")]
    assert len(accounts) == len(set(accounts)) == 130 and pages == 3  # the statics, then 100 + 30 accounts
    assert "poggio://accounts/example.com" in accounts
    # Globex's own accounts are Globex's: one with the same domain lists once, and zorblax never
    assert "poggio://accounts/zorblax.example" not in accounts
    bad = error_of(stack, "acme", "auto", lambda c: c.list_resources(cursor="forged"))
    assert bad.code == -32602 and "cursor" in bad.message


@pytest.mark.parametrize("mode", MODES)
def test_read_an_account_as_json_and_text(stack, mode):
    result = run(stack, "acme", mode, lambda c: c.read_resource("poggio://accounts/Example.com"))
    as_json, as_text = result.contents
    assert as_json.mime_type == "application/json" and as_text.mime_type == "text/markdown"
    assert as_json.uri == "poggio://accounts/Example.com"
    data = json.loads(as_json.text)
    assert data["account"]["name"] == "Example Corp" and data["sections"]["contacts"]["data"]["total"] == 3
    assert "# Example Corp (example.com)" in as_text.text
    assert "Globex" not in as_json.text + as_text.text


@pytest.mark.parametrize("mode", MODES)
def test_a_domain_of_another_workspace_is_not_found(stack, mode):
    for uri in ("poggio://accounts/zorblax.example", "poggio://accounts/zorblax.example/contacts"):
        exc = error_of(stack, "acme", mode, lambda c, uri=uri: c.read_resource(uri))
        assert exc.code == NOT_FOUND[mode], exc
        assert "Zorblax Secret" not in str(exc.error) and "Quentin" not in str(exc.error)
    # the same URI reads in its own workspace
    mine = run(stack, "globex", mode, lambda c: c.read_resource("poggio://accounts/zorblax.example/contacts"))
    assert "quentin.zorblax@zorblax.example" in mine.contents[0].text


def test_unknown_uris_and_packs_out_of_scope_answer_not_found(stack):
    for key, uri in (
        ("acme", "poggio://nothing/here"),
        ("acme", "poggio://accounts/example.com/deals"),
        ("acme_revenue", "poggio://accounts/example.com"),
        ("acme_revenue", "ui://accounts/account-card.html"),  # the view of a tool this token cannot call
    ):
        exc = error_of(stack, key, "legacy", lambda c, uri=uri: c.read_resource(uri))
        assert exc.code == -32002 and exc.message == f"Resource not found: {uri}", (key, uri, exc)


def test_contacts_of_an_account_page_by_uri(stack):
    page = run(stack, "acme", "auto", lambda c: c.read_resource("poggio://accounts/example.com/contacts"))
    data = json.loads(page.contents[0].text)
    assert len(data["contacts"]) == 3 and data["next_cursor"] is None and "next" not in data
    assert page.contents[1].mime_type == "text/markdown" and "3 contacts" in page.contents[1].text
    bad = error_of(
        stack, "acme", "auto", lambda c: c.read_resource("poggio://accounts/example.com/contacts?cursor=forged")
    )
    assert bad.code == -32602 and "cursor" in bad.message


def test_revenue_summary_resource(stack):
    result = run(stack, "acme_revenue", "legacy", lambda c: c.read_resource("poggio://revenue/summary"))
    data = json.loads(result.contents[0].text)
    assert data["opportunities"] > 0 and data["currencies"][0]["stages"]
    assert "Won" in result.contents[1].text or "won" in result.contents[1].text


@pytest.mark.parametrize("mode", ["legacy"])  # resources/subscribe is gone from 2026-07-28
def test_subscribe_and_unsubscribe_are_accepted_for_readable_uris(stack, mode):
    async def go(c):
        await c.subscribe_resource("poggio://accounts/example.com")
        await c.unsubscribe_resource("poggio://accounts/example.com")
        return True

    assert run(stack, "acme", mode, go)
    for uri in ("poggio://accounts/zorblax.example", "poggio://nothing"):
        exc = error_of(stack, "acme", mode, lambda c, uri=uri: c.subscribe_resource(uri))
        assert exc.code == -32002 and exc.message.startswith(f"Resource not found: {uri}")


@pytest.mark.parametrize("mode", MODES)
def test_app_views_carry_a_strict_csp_and_are_attached_to_their_tools(stack, mode):
    tools = {t.name: t for t in stack.mcp("acme", mode).tools()}
    assert tools["get_account"].meta["ui"] == {"resourceUri": "ui://accounts/account-card.html"}
    assert tools["get_revenue_summary"].meta["ui"] == {"resourceUri": "ui://revenue/pipeline.html"}
    assert "ui" not in (tools["search_accounts"].meta or {})
    view = run(stack, "acme", mode, lambda c: c.read_resource("ui://accounts/account-card.html")).contents[0]
    assert view.mime_type == "text/html;profile=mcp-app"
    assert view.meta["ui"]["csp"] == {"connectDomains": [], "resourceDomains": []}
    html = view.text
    assert "<script src" not in html and "http://" not in html and "https://" not in html
