"""Property-based attack on workspace isolation: generated arguments for every tool, with workspace A's
token, never bring back a value that only workspace B holds; B's cursors are refused in A."""

from __future__ import annotations

import json

import pytest
from helpers import Mcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instances import ServerProcess, make_instance

from poggio.commands.csv_import import import_csv
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

B_ACCOUNTS = """domain,name,industry,employees,country,description
example.com,Qwxzv Example,Qwxzvology,4242,NO,qwxzv secret example
qwxzv.example,Qwxzv Holdings,Qwxzvology,17,NO,qwxzv only
"""
B_CONTACTS = """email,first_name,last_name,title,account_domain
jqwxzv@qwxzv.example,Jqwxzv,Qwxzvsen,Qwxzv Officer,qwxzv.example
"""
B_OPPS = """account_domain,name,stage,amount,currency,close_date
qwxzv.example,Qwxzv Deal,proposal,424242.42,XQW,2026-04-01
"""
A_ACCOUNTS = """domain,name,industry,employees,country,description
example.com,Alpha Example,Software,10,US,alpha
alpha.example,Alpha Corp,Software,20,US,alpha two
"""
MARKER = "qwxzv"  # only B's rows contain it (case-insensitively)


@pytest.fixture(scope="module")
def two_workspaces(tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp("fuzz"), "sqlite")
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        a = create_workspace("alpha", "Alpha", True, Actor.cli())
        b = create_workspace("bravo", "Bravo", True, Actor.cli())
        assert not import_csv(registry, a, "accounts", A_ACCOUNTS.encode(), Actor.cli()).errors
        for kind, text in (("accounts", B_ACCOUNTS), ("contacts", B_CONTACTS), ("opportunities", B_OPPS)):
            assert not import_csv(registry, b, kind, text.encode(), Actor.cli()).errors
        tokens = {
            "a": TokenService().create(a, "a", Actor.cli()).plaintext,
            "b": TokenService().create(b, "b", Actor.cli()).plaintext,
        }
    server = ServerProcess(inst, extra_env={"POGGIO_RATE_LIMIT": "100000/minute"})
    yield server, tokens
    server.stop()


nasty = st.one_of(
    st.sampled_from(
        [
            "",
            "qwxzv",
            "QWXZV",
            "qwxzv.example",
            "example.com",
            "%",
            "_",
            "*",
            "' OR 1=1 --",
            '" OR ""="',
            "qwx*",
            "NEAR(qwxzv)",
            "qwxzv\x00",
            "1; DROP TABLE account",
            "\\",
            "%qwxzv%",
            "jqwxzv@qwxzv.example",
            "ｑｗｘｚｖ",
            "Qwxzv Holdings",
            "XQW",
            "bravo",
            "2",
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet="qwxzv%_*'\"\\ .@-", max_size=20),
)
numbers = st.one_of(st.none(), st.integers(min_value=-5, max_value=10**7))


def tool_calls():
    return st.one_of(
        st.builds(
            lambda q, i, c, n: ("search_accounts", {"query": q, "industry": i, "country": c, "min_employees": n}),
            nasty,
            st.one_of(st.none(), nasty),
            st.one_of(st.none(), st.sampled_from(["NO", "US", "no", "%%"])),
            numbers,
        ),
        st.builds(lambda d: ("get_account", {"domain": d}), nasty),
        st.builds(
            lambda q, d, t: ("search_contacts", {"query": q, "account_domain": d, "title": t}),
            nasty,
            st.one_of(st.none(), nasty),
            st.one_of(st.none(), nasty),
        ),
        st.builds(lambda e: ("get_contact", {"email": e}), nasty),
        st.builds(
            lambda d, s: ("list_opportunities", {"account_domain": d, "stage": s}),
            st.one_of(st.none(), nasty),
            st.one_of(st.none(), st.sampled_from(["proposal", "won", "x"])),
        ),
        st.builds(lambda d: ("get_revenue_summary", {"account_domain": d}), st.one_of(st.none(), nasty)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(tool_calls(), min_size=1, max_size=4))
def test_generated_arguments_never_reach_the_other_workspace(two_workspaces, calls):
    server, tokens = two_workspaces
    calls = [(name, {k: v for k, v in args.items() if v is not None}) for name, args in calls]
    for (name, args), result in zip(calls, Mcp(server.mcp_url, tokens["a"]).calls(calls), strict=True):
        text = "\n".join(getattr(c, "text", "") for c in result.content)
        blob = (text + json.dumps(result.structured_content or {}, ensure_ascii=False)).lower()
        asked = json.dumps(args, ensure_ascii=False).lower()
        if MARKER not in asked and "qwx" not in asked:
            assert MARKER not in blob, (name, args, blob[:500])
        # an answer may echo an argument, escaped (repr of U+44242 is '\U00044242'): digits it shows
        # for that reason are the caller's own
        echoed = asked + "".join(repr(v).lower() for v in args.values())
        if "4242" not in echoed:
            assert "424242" not in blob and "4242" not in blob.replace("424242", ""), (name, args, blob[:500])
        assert "traceback" not in blob


def test_cursors_of_the_other_workspace_are_refused(two_workspaces):
    server, tokens = two_workspaces
    b = Mcp(server.mcp_url, tokens["b"])
    a = Mcp(server.mcp_url, tokens["a"])
    for tool in ("search_accounts", "search_contacts", "list_opportunities"):
        page = b.call(tool, {"limit": 1}).structured_content
        if page["next_cursor"]:
            stolen = a.call(tool, {"limit": 1, "cursor": page["next_cursor"]})
            assert stolen.is_error and "cursor" in stolen.content[0].text
    cursor = b.call("search_accounts", {"limit": 1}).structured_content["next_cursor"]
    assert cursor and b.call("search_accounts", {"limit": 1, "cursor": cursor}).structured_content["accounts"]


COMPLETABLE = [
    ("prepare_call", "domain"),
    ("account_week", "domain"),
    ("follow_up", "email"),
    ("review_deal", "opportunity"),
]


def _prompt_answers(server, token: str, asks: list) -> list[str]:
    """Each completion's values, or each prompt's messages, or the protocol error, as text."""
    import anyio
    from helpers import mcp_client
    from mcp.shared.exceptions import MCPError
    from mcp_types import PromptReference

    async def main():
        out = []
        async with mcp_client(server.mcp_url, token) as client:
            for kind, prompt, argument, value in asks:
                try:
                    if kind == "complete":
                        answer = await client.complete(PromptReference(name=prompt), {"name": argument, "value": value})
                    else:
                        answer = await client.get_prompt(prompt, {argument: value})
                    out.append(answer.model_dump_json())
                except MCPError as exc:
                    out.append(exc.error.message)
        return out

    return anyio.run(main)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    asks=st.lists(
        st.tuples(st.sampled_from(["complete", "get"]), st.sampled_from(COMPLETABLE), nasty).map(
            lambda t: (t[0], t[1][0], t[1][1], t[2])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_prompts_and_completions_never_reach_the_other_workspace(two_workspaces, asks):
    server, tokens = two_workspaces
    for (kind, prompt, _argument, value), answer in zip(asks, _prompt_answers(server, tokens["a"], asks), strict=True):
        blob = answer.lower()
        asked = value.lower()
        if MARKER not in asked and "qwx" not in asked:
            assert MARKER not in blob, (kind, prompt, value, blob[:500])
        if "4242" not in asked + repr(value).lower():
            assert "424242" not in blob, (kind, prompt, value, blob[:500])
        assert "traceback" not in blob
