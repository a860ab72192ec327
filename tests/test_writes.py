"""Write tools end to end: a real MCP server, the official SDK client over real HTTP, on SQLite and
PostgreSQL. Scopes decide who sees and calls them; retries with an idempotency key write once; stale
updates are refused; day totals and the search index follow every write; every write is audited."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from decimal import Decimal

import httpx
import pytest
from helpers import Mcp, clear_of_the_minute_turn, revenue_day_totals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instances import BACKENDS, ServerProcess, make_instance
from stacks import acme_and_globex

from poggio.commands import demo
from poggio.commands.csv_import import import_csv
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import bind
from poggio.storage.models import AuditEvent

READ_TOOLS = {
    "search_accounts",
    "get_account",
    "search_contacts",
    "get_contact",
    "get_revenue_summary",
    "list_opportunities",
}
WRITE_TOOLS = {
    "create_account",
    "update_account",
    "add_note",
    "create_contact",
    "update_contact",
    "create_opportunity",
    "update_opportunity",
}
STAGES = ["prospecting", "qualification", "proposal", "negotiation", "won", "lost"]


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    def tokens(service, cli, acme, globex):
        return {
            "read": service.create(acme, "acme read", cli).plaintext,
            "writer": service.create(
                acme, "acme writer", cli, packs="accounts:write,contacts:write,revenue:write"
            ).plaintext,
            "accounts_writer": service.create(
                acme, "acme accounts writer", cli, packs="accounts:write,contacts"
            ).plaintext,
            "revenue_only": service.create(acme, "acme revenue", cli, packs="revenue").plaintext,
            "globex": service.create(
                globex, "globex writer", cli, packs="accounts:write,contacts:write,revenue:write"
            ).plaintext,
        }

    yield from acme_and_globex(
        tmp_path_factory.mktemp(f"writes-{request.param}"),
        request.param,
        tokens,
        accounts=20,
        seed=3,
        extra_env={"POGGIO_WRITE_RATE_LIMIT": "100000/minute"},
    )


@pytest.fixture(autouse=True)
def _bound(request):
    if "stack" in request.fixturenames:
        st_ = request.getfixturevalue("stack")
        db = bind(st_.instance.database_url)
        with db.connection_context():
            yield
    else:
        yield


def text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def ok(result) -> dict:
    assert not result.is_error, text(result)
    return result.structured_content


# -- scopes ----------------------------------------------------------------------------------------------
def test_tools_list_shows_write_tools_only_with_write_scope(stack):
    assert set(stack.mcp("read").tool_names()) == READ_TOOLS
    assert set(stack.mcp("writer").tool_names()) == READ_TOOLS | WRITE_TOOLS
    assert set(stack.mcp("accounts_writer").tool_names()) == (
        {
            "search_accounts",
            "get_account",
            "search_contacts",
            "get_contact",
            "create_account",
            "update_account",
            "add_note",
        }
    )
    # the answers are cached per scope: asking in turns never hands one scope's list to another
    for _ in range(2):
        assert set(stack.mcp("read", "legacy").tool_names()) == READ_TOOLS
        assert WRITE_TOOLS <= set(stack.mcp("writer", "legacy").tool_names())


def test_annotations_tell_the_truth(stack):
    tools = {t.name: t for t in stack.mcp("writer").tools()}
    for name in WRITE_TOOLS:
        a = tools[name].annotations
        assert a.read_only_hint is False, name
        assert a.destructive_hint is (name.startswith("update_")), name
        assert a.idempotent_hint is (name.startswith("update_")), name
        assert "idempotency_key" in tools[name].input_schema["properties"], name
    assert "if_unmodified_since" in tools["update_opportunity"].input_schema["properties"]
    assert tools["get_account"].annotations.read_only_hint is True


def test_write_without_write_scope_is_refused_naming_the_scope(stack):
    refused = stack.mcp("read").call("create_account", {"domain": "nope.example", "name": "Nope"})
    assert refused.is_error
    assert text(refused) == "create_account needs the accounts:write scope; this token has accounts:read."
    refused = stack.mcp("accounts_writer").call("update_contact", {"email": "x@example.com", "title": "CEO"})
    assert refused.is_error and ("update_contact needs the contacts:write scope; this token has contacts:read") in text(
        refused
    )
    refused = stack.mcp("revenue_only").call("create_account", {"domain": "nope.example", "name": "Nope"})
    assert refused.is_error and (
        "needs the accounts:write scope; this token has no access to the accounts pack"
    ) in text(refused)
    assert not stack.mcp("read").call("get_account", {"domain": "nope.example"}).structured_content


def test_a_refused_write_is_on_the_activity_record_as_refused(stack):
    import time

    from poggio.security.token_format import digest
    from poggio.storage.models import Activity, ApiToken

    reader = ApiToken.get(ApiToken.digest == digest(stack.tokens["read"])).id
    stack.mcp("read").call("update_contact", {"email": "x@example.com", "title": "CEO"})
    deadline = time.monotonic() + 10
    # this token's calls only: an earlier test's refused update_contact was made with another token
    while not (
        rows := list(
            Activity.select().where(
                (Activity.tool == "update_contact") & (Activity.kind == "token") & (Activity.subject_id == reader)
            )
        )
    ):
        assert time.monotonic() < deadline, "the refused call never reached the activity record"
        time.sleep(0.2)
    assert [r.outcome for r in rows] == ["refused"]


# -- each write tool -------------------------------------------------------------------------------------
def test_create_and_update_account_and_the_search_index_follows(stack):
    client = stack.mcp("writer")
    made = ok(
        client.call(
            "create_account",
            {
                "domain": "https://www.QF-labs.example/",
                "name": "Quillfeather Labs",
                "industry": "Software",
                "employees": 40,
                "country": "pt",
            },
        )
    )
    assert made["domain"] == "qf-labs.example" and made["country"] == "PT" and made["updated_at"]
    found = ok(client.call("search_accounts", {"query": "quillfeather"}))["accounts"]
    assert [a["domain"] for a in found] == ["qf-labs.example"]
    again = client.call("create_account", {"domain": "qf-labs.example", "name": "Twice"})
    assert again.is_error and "already exists" in text(again)

    renamed = ok(
        client.call("update_account", {"domain": "qf-labs.example", "name": "Inkwell Systems", "employees": 45})
    )
    assert renamed["name"] == "Inkwell Systems" and renamed["employees"] == 45 and renamed["industry"] == "Software"
    assert renamed["updated_at"] > made["updated_at"]
    assert [a["domain"] for a in ok(client.call("search_accounts", {"query": "inkwell"}))["accounts"]] == [
        "qf-labs.example"
    ]
    assert ok(client.call("search_accounts", {"query": "quillfeather"}))["accounts"] == []  # the old name is gone
    profile = ok(client.call("get_account", {"domain": "qf-labs.example"}))
    assert profile["account"]["name"] == "Inkwell Systems" and profile["account"]["updated_at"] == renamed["updated_at"]


def test_validation_is_the_csv_importers_and_names_field_and_allowed_values(stack):
    client = stack.mcp("writer")
    bad_stage = client.call(
        "create_opportunity",
        {
            "account_domain": "example.com",
            "name": "X",
            "stage": "closing",
            "amount": "10",
            "currency": "USD",
            "close_date": "2027-01-01",
        },
    )
    assert bad_stage.is_error
    message = text(bad_stage)
    assert "stage" in message and "prospecting, qualification, proposal, negotiation, won, lost" in message
    acme = create_workspace_lookup("acme")
    report = import_csv(
        stack.registry,
        acme,
        "opportunities",
        b"account_domain,name,stage,amount,currency,close_date\nexample.com,X,closing,10,USD,2027-01-01\n",
        Actor.cli(),
    )
    assert report.errors == [(2, "stage", message.split("stage: ", 1)[1])]  # the very same words
    bad = client.call("create_account", {"domain": "not a domain", "name": "X"})
    assert bad.is_error and "domain" in text(bad) and "example.com" in text(bad)
    bad = client.call("create_account", {"domain": "okay.example", "name": "X", "country": "P1"})
    assert bad.is_error and "country" in text(bad) and "two-letter" in text(bad)
    bad = client.call(
        "create_contact", {"email": "nobody", "first_name": "A", "last_name": "B", "account_domain": "example.com"}
    )
    assert bad.is_error and "email" in text(bad) and "e-mail address" in text(bad)
    bad = client.call("update_opportunity", {"id": 1})
    assert bad.is_error and "stage, amount, close_date, name" in text(bad)


def create_workspace_lookup(slug):
    from poggio.storage.models import Workspace

    return Workspace.get(Workspace.slug == slug)


def test_contacts_and_notes(stack):
    client = stack.mcp("writer")
    made = ok(
        client.call(
            "create_contact",
            {
                "email": "Mira.Okafor@Example.com",
                "first_name": "Mira",
                "last_name": "Okafor",
                "title": "CTO",
                "account_domain": "example.com",
            },
        )
    )
    assert made["email"] == "mira.okafor@example.com" and made["account_domain"] == "example.com"
    moved = ok(
        client.call(
            "update_contact",
            {"email": "mira.okafor@example.com", "title": "Chief Scientist", "last_name": "Okafor-Lund"},
        )
    )
    assert moved["title"] == "Chief Scientist" and moved["last_name"] == "Okafor-Lund"
    found = ok(client.call("search_contacts", {"query": "scientist"}))["contacts"]
    assert [c["email"] for c in found] == ["mira.okafor@example.com"]
    assert not ok(client.call("search_contacts", {"query": "cto okafor"}))["contacts"]
    deal = ok(client.call("list_opportunities", {"account_domain": "example.com", "limit": 1}))["opportunities"][0]
    ok(client.call("add_note", {"domain": "example.com", "text": "First call: interested."}))
    ok(
        client.call(
            "add_note",
            {
                "domain": "example.com",
                "text": "Agreed on a pilot.",
                "contact_email": "mira.okafor@example.com",
                "opportunity_id": deal["id"],
            },
        )
    )
    profile = client.call("get_account", {"domain": "example.com"})
    notes = ok(profile)["notes"]
    assert [n["text"] for n in notes[:2]] == ["Agreed on a pilot.", "First call: interested."]  # newest first
    assert "Okafor-Lund" in notes[0]["links"] and f"opportunity {deal['id']}" in notes[0]["links"]
    assert "Agreed on a pilot." in text(profile)
    other = client.call("add_note", {"domain": "example.com", "text": "x", "contact_email": "nobody@nowhere.example"})
    assert other.is_error and "contact_email" in text(other)
    ok(client.call("create_account", {"domain": "okafor-lund.example", "name": "Okafor Lund Labs"}))
    moved = ok(
        client.call(
            "update_contact",
            {"email": "mira.okafor@example.com", "account_domain": "okafor-lund.example", "title": "Founder"},
        )
    )
    assert (moved["account_domain"], moved["title"], moved["last_name"]) == (
        "okafor-lund.example",
        "Founder",
        "Okafor-Lund",
    )
    again = ok(client.call("get_contact", {"email": "mira.okafor@example.com"}))
    assert (again["account_domain"], again["title"]) == ("okafor-lund.example", "Founder")
    assert [c["email"] for c in ok(client.call("search_contacts", {"query": "founder"}))["contacts"]] == [
        "mira.okafor@example.com"
    ]


# -- retries and concurrency -----------------------------------------------------------------------------
def test_idempotent_retry_writes_once_and_other_arguments_are_refused(stack):
    client = stack.mcp("writer")
    args = {
        "account_domain": "example.com",
        "name": "Retry Deal",
        "stage": "proposal",
        "amount": "5000.00",
        "currency": "CHF",
        "close_date": "2027-05-01",
        "idempotency_key": "retry-3f2a",
    }
    first, second = client.calls([("create_opportunity", args), ("create_opportunity", args)])
    assert ok(first)["id"] == ok(second)["id"] and text(first) == text(second)
    listed = ok(client.call("list_opportunities", {"account_domain": "example.com", "limit": 100}))["opportunities"]
    assert [o["name"] for o in listed].count("Retry Deal") == 1
    summary = ok(client.call("get_revenue_summary", {}))
    chf = next(c for c in summary["currencies"] if c["currency"] == "CHF")
    assert Decimal(chf["stages"]["proposal"]["amount"]) == Decimal("5000.00")
    other = client.call("create_opportunity", {**args, "amount": "6000"})
    assert other.is_error and "idempotency_key" in text(other) and "other arguments" in text(other)
    # per workspace: globex's same key is its own
    assert not stack.mcp("globex").call("create_opportunity", {**args, "account_domain": "zorblax.example"}).is_error


def test_stale_update_is_refused_with_the_current_record(stack):
    client = stack.mcp("writer")
    deal = ok(client.call("list_opportunities", {"account_domain": "example.com", "limit": 1}))["opportunities"][0]
    seen = deal["updated_at"]
    first = ok(client.call("update_opportunity", {"id": deal["id"], "amount": "1234.50", "if_unmodified_since": seen}))
    stale = client.call("update_opportunity", {"id": deal["id"], "amount": "999", "if_unmodified_since": seen})
    assert stale.is_error
    assert "if_unmodified_since" in text(stale) and '"amount":"1234.5' in text(stale).replace(" ", ""), text(stale)
    assert (
        ok(
            client.call(
                "update_opportunity",
                {"id": deal["id"], "stage": "negotiation", "if_unmodified_since": first["updated_at"]},
            )
        )["stage"]
        == "negotiation"
    )


def _day_totals_match(workspace_slug: str) -> None:
    kept, computed = revenue_day_totals(create_workspace_lookup(workspace_slug).id)
    assert kept == computed


def test_several_clients_updating_one_opportunity(stack):
    client = stack.mcp("writer")
    deal = ok(
        client.call(
            "create_opportunity",
            {
                "account_domain": "example.com",
                "name": "Contested",
                "stage": "prospecting",
                "amount": "100",
                "currency": "SEK",
                "close_date": "2027-02-02",
            },
        )
    )
    results: list = []

    def update(i: int, guarded: bool):
        args = {"id": deal["id"], "amount": str(100 + i), "stage": STAGES[i % 6], "close_date": f"2027-03-{i + 1:02d}"}
        if guarded:
            args["if_unmodified_since"] = deal["updated_at"]
        results.append((guarded, stack.mcp("writer").call("update_opportunity", args)))

    threads = [threading.Thread(target=update, args=(i, i % 2 == 0)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    guarded_ok = [r for g, r in results if g and not r.is_error]
    unguarded_ok = [r for g, r in results if not g and not r.is_error]
    assert len(unguarded_ok) == 4  # no guard: each one lands, one after the other
    assert len(guarded_ok) <= 1  # at most one guarded update sees the version it read
    assert all("changed at" in text(r) for g, r in results if g and r.is_error)
    _day_totals_match("acme")


# -- day totals: random writes against totals recomputed from the opportunities ----------------------------
operation = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(STAGES),
        st.decimals(0, 10**6, places=2),
        st.sampled_from(["USD", "EUR", "JPY"]),
        st.integers(0, 5),
    ),
    st.tuples(
        st.just("update"),
        st.integers(0, 50),
        st.one_of(st.none(), st.sampled_from(STAGES)),
        st.one_of(st.none(), st.decimals(0, 10**6, places=2)),
        st.one_of(st.none(), st.integers(0, 5)),
    ),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=6))
def test_day_totals_stay_exact_under_random_writes(stack, ops):
    client = stack.mcp("writer")
    day = dt.date(2027, 6, 1)
    ids = [
        o["id"]
        for o in ok(client.call("list_opportunities", {"account_domain": "example.com", "limit": 50}))["opportunities"]
    ]
    calls = []
    for op in ops:
        if op[0] == "create":
            _, stage, amount, currency, shift = op
            calls.append(
                (
                    "create_opportunity",
                    {
                        "account_domain": "example.com",
                        "name": "Random",
                        "stage": stage,
                        "amount": str(amount),
                        "currency": currency,
                        "close_date": str(day + dt.timedelta(days=shift)),
                    },
                )
            )
        else:
            _, pick, stage, amount, shift = op
            args = {
                "id": ids[pick % len(ids)],
                "stage": stage,
                "amount": None if amount is None else str(amount),
                "close_date": None if shift is None else str(day + dt.timedelta(days=shift)),
            }
            args = {k: v for k, v in args.items() if v is not None}
            if len(args) > 1:
                calls.append(("update_opportunity", args))
    for result in client.calls(calls):
        ok(result)
    _day_totals_match("acme")
    summary = ok(client.call("get_revenue_summary", {}))
    recomputed = defaultdict(Decimal)
    for o in _all_opportunities(client):
        recomputed[(o["currency"], o["stage"])] += Decimal(o["amount"])
    for c in summary["currencies"]:
        for stage, total in c["stages"].items():
            assert Decimal(total["amount"]) == recomputed[(c["currency"], stage)]


def _all_opportunities(client):
    items, cursor = [], None
    while True:
        page = ok(client.call("list_opportunities", {"limit": 100, **({"cursor": cursor} if cursor else {})}))
        items += page["opportunities"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


# -- isolation -------------------------------------------------------------------------------------------
def _globex_rows():
    from poggio_accounts import Account
    from poggio_accounts.models import Note
    from poggio_contacts import Contact
    from poggio_revenue import Opportunity

    ws = create_workspace_lookup("globex")
    return [
        sorted(tuple(r.values()) for r in model.select().where(model.workspace == ws.id).dicts())
        for model in (Account, Contact, Opportunity, Note)
    ]


def _globex_refs():
    from poggio_revenue import Opportunity

    ws = create_workspace_lookup("globex")
    return [o.id for o in Opportunity.select().where(Opportunity.workspace == ws.id)]


GLOBEX_ONLY = ("Secret Holdings", "Chief Secret Officer", "987654.32", "111111.11", "Mining")
globex_values = st.sampled_from(
    [
        "zorblax.example",
        "ZORBLAX.example",
        "https://zorblax.example/x",
        "quentin.zorblax@zorblax.example",
        "Zorblax Mega Deal",
        "example.com",
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_write_tool_arguments_never_reach_the_other_workspace(stack, data):
    before = _globex_rows()
    globex_ids = _globex_refs()
    tool = data.draw(st.sampled_from(sorted(WRITE_TOOLS)))
    ident = st.one_of(st.sampled_from(globex_ids), st.integers(-5, 10**6))
    args = {
        "create_account": lambda: {"domain": data.draw(globex_values), "name": "Mine"},
        "update_account": lambda: {"domain": data.draw(globex_values), "name": "Stolen"},
        "add_note": lambda: {"domain": data.draw(globex_values), "text": "mine", "opportunity_id": data.draw(ident)},
        "create_contact": lambda: {
            "email": data.draw(globex_values),
            "first_name": "A",
            "last_name": "B",
            "account_domain": data.draw(globex_values),
        },
        "update_contact": lambda: {"email": data.draw(globex_values), "title": "Stolen"},
        "create_opportunity": lambda: {
            "account_domain": data.draw(globex_values),
            "name": "Mine",
            "stage": "won",
            "amount": "1",
            "currency": "NOK",
            "close_date": "2026-03-01",
        },
        "update_opportunity": lambda: {"id": data.draw(ident), "amount": "1", "stage": "lost"},
    }[tool]()
    result = stack.mcp("writer").call(tool, args)
    # nothing only Globex knows comes back (the arguments themselves may be echoed in an error)
    leaked = [fact for fact in GLOBEX_ONLY if fact in text(result)]
    assert not leaked
    assert _globex_rows() == before


# -- on record -------------------------------------------------------------------------------------------
def test_every_write_is_in_the_audit_log_without_secrets(stack):
    client = stack.mcp("writer")
    ok(client.call("create_account", {"domain": "audited.example", "name": "Audited Ltd"}))
    ok(
        client.call(
            "update_account",
            {
                "domain": "audited.example",
                "industry": "Retail",
                "description": f"pasted {stack.tokens['globex']} by mistake",
            },
        )
    )
    events = list(
        AuditEvent.select()
        .where((AuditEvent.action == "data.written") & AuditEvent.target.contains("audited.example"))
        .order_by(AuditEvent.id)
    )
    assert [json.loads(e.detail)["tool"] for e in events] == ["create_account", "update_account"]
    created, updated = (json.loads(e.detail) for e in events)
    assert created["before"] is None and created["after"]["name"] == "Audited Ltd"
    assert updated["before"] == {"industry": "", "description": ""} and updated["after"]["industry"] == "Retail"
    assert isinstance(updated["token_id"], int) and events[0].actor_label == "token: acme writer"
    assert stack.tokens["globex"] not in events[1].detail and "[redacted]" in events[1].detail
    # a refused call and a replayed one write nothing, on record neither
    count = AuditEvent.select().where(AuditEvent.action == "data.written").count()
    stack.mcp("read").call("create_account", {"domain": "x.example", "name": "X"})
    assert AuditEvent.select().where(AuditEvent.action == "data.written").count() == count


def test_an_oauth_app_with_write_scope_writes_and_is_audited_as_the_app(stack):
    from poggio.identity.oauth import OAuthService

    service = OAuthService(known_packs=set(stack.registry.names))
    issued = service.create_confidential(
        create_workspace_lookup("acme"), "CRM sync", Actor.cli(), packs="accounts:write,revenue", resource=stack.url
    )
    grant = service.standing_grant(issued.client)
    access = service.issue_tokens(grant, refresh=False)["access_token"]
    app = Mcp(stack.url, access)
    assert {"create_account", "update_account", "add_note"} <= set(app.tool_names())
    assert "create_opportunity" not in app.tool_names()
    ok(app.call("add_note", {"domain": "example.com", "text": "Synced from the CRM."}))
    # over OAuth a call out of scope is the scope challenge (403 insufficient_scope), naming what to ask for
    refused = httpx.post(
        stack.url,
        headers={
            "Authorization": f"Bearer {access}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "create_opportunity",
                "arguments": {
                    "account_domain": "example.com",
                    "name": "X",
                    "stage": "won",
                    "amount": "1",
                    "currency": "USD",
                    "close_date": "2027-01-01",
                },
            },
        },
    )
    assert (
        refused.status_code == 403
        and 'scope="accounts:write revenue:read revenue:write"' in refused.headers["www-authenticate"]
    )
    assert (
        "create_opportunity needs the revenue:write scope; this token has revenue:read."
        in refused.json()["error_description"]
    )
    event = AuditEvent.select().where(AuditEvent.action == "data.written").order_by(AuditEvent.id.desc()).first()
    assert event.actor_label == "app: CRM sync" and json.loads(event.detail)["grant_id"] == grant.id


def test_bad_write_arguments_are_answered_in_plain_words(stack):
    client = stack.mcp("writer")
    bad = client.call("update_opportunity", {"id": "seven", "amount": -5, "stage": "won"})
    assert bad.is_error and "'id'" in text(bad) and "'amount'" in text(bad) and "Traceback" not in text(bad)
    bad = client.call("add_note", {"domain": "example.com", "text": "x", "idempotency_key": "has spaces"})
    assert bad.is_error and "'idempotency_key'" in text(bad)
    bad = client.call("update_account", {"domain": "example.com", "name": "X", "if_unmodified_since": "yesterday"})
    assert bad.is_error and "'if_unmodified_since'" in text(bad)
    bad = client.call("create_account", {"domain": "x.example", "name": "X", "owner": "me"})
    assert bad.is_error and "unknown argument 'owner'" in text(bad)


def small_writer_server(folder, write_limit: str):
    """A SQLite instance of three demo accounts, its MCP server, and a token that writes accounts."""
    inst = make_instance(folder, "sqlite")
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        ws = demo.build(registry, "acme", accounts=3, seed=1).workspace
        token = (
            TokenService(known_packs=set(registry.names)).create(ws, "w", Actor.cli(), packs="accounts:write").plaintext
        )
    return inst, ServerProcess(inst, extra_env={"POGGIO_WRITE_RATE_LIMIT": write_limit}), token


def test_write_rate_limit_is_separate_and_counts_only_writes(tmp_path):
    _, server, token = small_writer_server(tmp_path / "inst", "3/minute")
    try:
        client = Mcp(server.mcp_url, token)
        clear_of_the_minute_turn()
        for i in range(3):
            ok(client.call("add_note", {"domain": "example.com", "text": f"note {i}"}))
        for _ in range(5):  # reads are not counted against the writes' limit
            ok(client.call("get_account", {"domain": "example.com"}))

        def write(text: str) -> httpx.Response:
            return httpx.post(
                server.mcp_url,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2025-06-18",
                },
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "add_note", "arguments": {"domain": "example.com", "text": text}},
                },
            )

        response = write("4")
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert "write tool calls" in response.json()["error_description"]
        ok(client.call("get_account", {"domain": "example.com"}))
    finally:
        server.stop()


def test_a_write_waits_for_the_lock_in_a_thread_while_the_server_answers(tmp_path):
    """On SQLite a write tool may have to wait for the database's write lock (another process writes):
    it waits in a worker thread, never on the event loop, so the server answers other calls
    meanwhile, and the write goes through once the lock is released."""
    import sqlite3
    import time
    from concurrent.futures import ThreadPoolExecutor

    inst, server, token = small_writer_server(tmp_path / "inst", "1000/minute")
    holder = sqlite3.connect(inst.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        client = Mcp(server.mcp_url, token)
        ok(client.call("add_note", {"domain": "example.com", "text": "while the lock is free"}))
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.call, "add_note", {"domain": "example.com", "text": "after the lock"})
            time.sleep(0.5)
            assert not pending.done()  # it waits for the lock...
            for _ in range(3):  # ...and not on the event loop: the server answers meanwhile
                ok(client.call("get_account", {"domain": "example.com"}))
                assert not pending.done()  # answered while the write still waits (a blocked loop answers after it)
            holder.execute("COMMIT")
            ok(pending.result(timeout=10))
        notes = [n["text"] for n in ok(client.call("get_account", {"domain": "example.com"}))["notes"]]
        assert notes[:2] == ["after the lock", "while the lock is free"]
    finally:
        holder.close()
        server.stop()


def test_idempotency_keys_are_kept_48_hours_then_forgotten(instance):
    """In process: a key past its time is a new key (the write happens again) and old keys go."""
    from poggio.runtime.writes import KEEP_HOURS, forget_old_keys
    from poggio.storage.db import utcnow
    from poggio.storage.models import IdempotencyKey
    from poggio.testing import tool_context

    registry = PackRegistry.load()
    ws = demo.build(registry, "acme", accounts=2, seed=1).workspace
    ctx = tool_context(ws.id, "add_note", registry=registry)
    add_note = registry.tool("add_note")
    first = add_note(ctx, domain="example.com", text="once", idempotency_key="k1").data
    assert add_note(ctx, domain="example.com", text="once", idempotency_key="k1").data.id == first.id
    IdempotencyKey.update(created_at=utcnow() - dt.timedelta(hours=KEEP_HOURS + 1)).execute()
    assert add_note(ctx, domain="example.com", text="once", idempotency_key="k1").data.id != first.id
    add_note(ctx, domain="example.com", text="twice", idempotency_key="k2")
    IdempotencyKey.update(created_at=utcnow() - dt.timedelta(hours=KEEP_HOURS + 1)).execute()
    assert forget_old_keys(ws.id) == 2 and IdempotencyKey.select().count() == 0


def test_updated_at_is_an_rfc3339_date_time_with_its_offset(stack):
    """The output schemas say "format": "date-time" (RFC 3339), which needs an offset; clients that
    check structured content against them (the MCP Inspector does) refused a naive moment."""
    import datetime as dt

    account = stack.mcp("read").call("get_account", {"domain": "example.com"}).structured_content["account"]
    moment = dt.datetime.fromisoformat(account["updated_at"].replace("Z", "+00:00"))
    assert moment.utcoffset() == dt.timedelta(0), account["updated_at"]
    # and it is what if_unmodified_since takes back
    updated = stack.mcp("writer").call(
        "update_account",
        {"domain": "example.com", "industry": "Software", "if_unmodified_since": account["updated_at"]},
    )
    assert not updated.is_error, updated.content[0].text
    noted = stack.mcp("writer").call("add_note", {"domain": "example.com", "text": "dated with its offset"})
    assert not noted.is_error, noted.content[0].text
    notes = stack.mcp("read").call("get_account", {"domain": "example.com"}).structured_content["notes"]
    assert dt.datetime.fromisoformat(notes[0]["created_at"].replace("Z", "+00:00")).utcoffset() == dt.timedelta(0)
