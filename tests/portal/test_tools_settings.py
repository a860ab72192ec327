"""Settings > MCP Server > Tools (issue 30 §2): every pack's tools with their annotations and a switch
each (HTMX partial, CSRF-protected, audited, admins only); the Generate-token dialog narrows a token
to named tools, with inline errors for tools outside the chosen packs."""

from __future__ import annotations

import re

from portal_client import Browser

from poggio.identity.switches import ToolSwitch
from poggio.storage.models import ApiToken, AuditEvent


def test_tools_section_lists_every_tool_with_its_annotations(admin):
    html = admin.get("/settings/mcp/").get_data(as_text=True)
    section = html[html.index('id="tools"') :]
    for name in ("search_accounts", "get_account", "update_account", "list_opportunities", "create_contact"):
        assert f'id="tool-{name}"' in section
    row = re.search(r'<tr id="tool-update_account".*?</tr>', section, re.S).group(0)
    assert "Update an account" in row and ">write<" in row and ">destructive<" in row and ">idempotent<" in row
    assert 'aria-checked="true"' in row
    row = re.search(r'<tr id="tool-get_account".*?</tr>', section, re.S).group(0)
    assert ">read-only<" in row and ">destructive<" not in row


def test_switching_a_tool_answers_its_row_and_is_audited(admin):
    r = admin.post("/settings/mcp/tools/get_account", {"on": "0"}, htmx=True)
    part = r.get_data(as_text=True)
    assert r.status_code == 200 and part.lstrip().startswith("<tr")
    assert 'id="tool-get_account"' in part and 'aria-checked="false"' in part and "<html" not in part
    assert [s.name for s in ToolSwitch.select()] == ["get_account"]
    event = AuditEvent.select().where(AuditEvent.action == "workspace.tool_switched").get()
    assert event.target == "get_account" and event.actor_label == "admin@acme.example"
    r = admin.post("/settings/mcp/tools/get_account", {"on": "1"})  # without JavaScript: back to the page
    assert r.status_code == 302 and r.headers["Location"].endswith("/settings/mcp/#tools")
    assert not ToolSwitch.select().exists()
    assert admin.post("/settings/mcp/tools/no_such_tool", {"on": "0"}, htmx=True).status_code == 404
    assert admin.post("/settings/mcp/tools/get_account", {"on": "maybe"}, htmx=True).status_code == 400


def test_switching_needs_the_csrf_token_and_an_admin(admin, browser, app):
    assert admin.post("/settings/mcp/tools/get_account", {"on": "0"}, htmx=True, csrf=False).status_code == 400
    assert not ToolSwitch.select().exists()
    member = Browser(app.test_client())
    assert member.sign_in("member@acme.example").status_code == 302
    member.get("/")
    assert member.post("/settings/mcp/tools/get_account", {"on": "0"}, htmx=True).status_code == 403
    assert not ToolSwitch.select().exists()


def test_token_dialog_narrows_to_named_tools(admin):
    dialog = admin.get("/settings/mcp/tokens/new", htmx=True).get_data(as_text=True)
    assert 'name="tools" value="get_account"' in dialog and "Only some tools" in dialog
    r = admin.post(
        "/settings/mcp/tokens",
        {"name": "two", "expiry": "30", "packs": ["accounts"], "tools": ["get_account", "search_accounts"]},
        htmx=True,
    )
    assert r.status_code == 201
    assert ApiToken.get(ApiToken.name == "two").tools == "get_account,search_accounts"
    assert "only the tools get_account, search_accounts" in admin.get("/settings/mcp/").get_data(as_text=True)
    r = admin.post(
        "/settings/mcp/tokens",
        {"name": "outside", "expiry": "30", "packs": ["accounts"], "tools": ["get_contact"]},
        htmx=True,
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "outside the chosen packs: get_contact" in html
    assert re.search(r'<details class="tool-narrowing" open', html)  # the error shows where the choice is
    r = admin.post("/settings/mcp/tokens", {"name": "bogus", "expiry": "30", "tools": ["drop_tables"]}, htmx=True)
    assert r.status_code == 422  # not a choice offered: refused by the form
    assert not ApiToken.select().where(ApiToken.name.in_(["outside", "bogus"])).exists()


def test_consent_page_customise_narrows_the_grant_to_tools(admin):
    from test_oauth import authorize_url, consent_fields, exchange, pkce, redirected, register

    from poggio.storage.models import OAuthGrant

    reg = register(admin.client)
    verifier, challenge = pkce()
    url = authorize_url(reg["client_id"], challenge)
    page = admin.get(url).get_data(as_text=True)
    assert "Customise: only some tools" in page and 'name="tools" value="get_account"' in page
    fields = consent_fields(page)
    chosen = {**fields, "decision": "approve", "packs": ["accounts"], "lifetime": "90"}
    r = admin.post(url, {**chosen, "tools": ["get_account", "get_contact"]})  # contacts not ticked
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "outside the chosen packs: get_contact" in html
    assert '<details class="customise" open' in html and 'value="get_account" checked' in html
    r = admin.post(url, {**chosen, "tools": ["no_such_tool"]})
    assert r.status_code == 422 and "unknown tool(s): no_such_tool" in r.get_data(as_text=True)
    params = redirected(admin.post(url, {**chosen, "tools": ["get_account", "search_accounts"]}))
    assert exchange(admin.client, reg["client_id"], params["code"], verifier).status_code == 200
    grant = OAuthGrant.select().order_by(OAuthGrant.id.desc()).first()
    assert grant.packs == "accounts" and grant.tools == "get_account,search_accounts"
    assert "only the tools get_account, search_accounts" in admin.get("/settings/mcp/").get_data(as_text=True)
