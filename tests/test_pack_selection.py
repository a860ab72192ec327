"""``POGGIO_PACKS`` without one of the built-in packs: the rest of Poggio works as before (the schema,
the demo, imports, the packs list, the MCP server, the portal). Without accounts, the packs that
require it stay out too, and what remains is the core."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from helpers import Mcp
from instances import ServerProcess

from poggio.commands.cli import main

TOOLS = {
    "accounts": ["search_accounts", "get_account"],
    "contacts": ["search_contacts", "get_contact"],
    "revenue": ["get_revenue_summary", "list_opportunities"],
}
KINDS = {"accounts": "accounts", "contacts": "contacts", "revenue": "opportunities"}
CSV = {
    "accounts": "domain,name,industry,employees,country,description\nnew.example,New Co,,,,\n",
    "contacts": "email,first_name,last_name,title,account_domain\nnew@example.com,New,Person,CEO,example.com\n",
    "opportunities": "account_domain,name,stage,amount,currency,close_date\n"
    "example.com,New deal,won,10,USD,2026-01-02\n",
}


@pytest.mark.parametrize("disabled", ["accounts", "contacts", "revenue"])
def test_poggio_packs_without_a_built_in_pack(disabled, instance, tmp_path, monkeypatch):
    enabled = [p for p in TOOLS if p != disabled]
    loaded = [] if disabled == "accounts" else enabled  # contacts and revenue require accounts
    monkeypatch.setenv("POGGIO_PACKS", ",".join(enabled))
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    assert run("db", "upgrade").exit_code == 0
    demo = run("demo", "--accounts", "15")
    assert demo.exit_code == 0 and "admin@acme.example" in demo.output and "failed" not in demo.output
    listing = run("packs", "list").output
    for pack in TOOLS:
        assert (f"{pack} 0.1.0" in listing) == (pack in loaded)
    for pack in enabled:
        if pack not in loaded:
            assert f"{pack}  FAILED: requires pack 'accounts', which is not loaded" in listing
    for pack in TOOLS:
        csv = tmp_path / f"{pack}.csv"
        csv.write_text(CSV[KINDS[pack]])
        result = run("import", KINDS[pack], str(csv), "--workspace", "acme")
        if pack in loaded:
            assert result.exit_code == 0 and "Imported 1" in result.output, result.output
        else:
            assert result.exit_code == 1 and f"unknown kind {KINDS[pack]!r}" in result.output
    token = run("token", "create", "--workspace", "acme", "--name", "agent").stdout.strip()
    assert token.startswith("pgo_")
    assert run("token", "create", "--workspace", "acme", "--name", "x", "--packs", disabled).exit_code == 1

    server = ServerProcess(instance, extra_env={"POGGIO_PACKS": ",".join(enabled)})
    try:
        client = Mcp(server.mcp_url, token)
        assert sorted(client.tool_names()) == sorted(t for p in loaded for t in TOOLS[p])
        if "accounts" in loaded:
            profile = client.call("get_account", {"domain": "example.com"})
            assert not profile.is_error
            assert sorted(profile.structured_content["sections"]) == sorted(set(loaded) - {"accounts"})
        if "revenue" in loaded:
            assert not client.call("get_revenue_summary", {}).is_error
        if "contacts" in loaded:
            assert client.call("search_contacts", {"query": "new"}).structured_content["contacts"]
    finally:
        server.stop()

    from portal import create_app

    app = create_app()
    app.config["TESTING"] = True
    browser = app.test_client()
    page = browser.get("/sign-in")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    signed_in = browser.post(
        "/sign-in", data={"email": "admin@acme.example", "password": "poggio-demo-admin", "csrf_token": csrf}
    )
    assert signed_in.status_code == 302
    settings = browser.get("/settings/mcp/")
    assert settings.status_code == 200
    html = settings.get_data(as_text=True)
    for pack in TOOLS:  # the token dialog offers the loaded packs only
        assert (f'value="{pack}"' in html) == (pack in loaded)
