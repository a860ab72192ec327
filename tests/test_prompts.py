"""Prompts, completion, and the progress and log notices of tool calls, end to end: a real server
process, the official MCP client over real HTTP, both protocol generations, on SQLite and
PostgreSQL. A test-only pack (installed as a third party's distribution) has a tool that reports."""

from __future__ import annotations

import json
import os

import anyio
import httpx
import httpx2
import pytest
from helpers import install_pack
from instances import BACKENDS
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, Implementation, PromptReference, ResourceTemplateReference
from stacks import acme_and_globex

REPORTER = '''
import time
from poggio import PackInfo, ToolResult, hookimpl, tool


@tool(title="Count", progress=True, logs=True, thread=True)
def count_to_three(ctx) -> ToolResult:
    """Counts to three, reporting each step and logging at debug and info."""
    for n in (1, 2, 3):
        ctx.progress(n, 3, f"step {n}")
        ctx.log("debug", f"debug {n}")
        ctx.log("info", f"info {n}", {"step": n})
        time.sleep(0.01)
    return ToolResult(None, "three")


@hookimpl
def poggio_pack():
    return PackInfo(name="reporter", title="Reporter", version="1.0", description="Test-only: a tool that reports.")


@hookimpl
def poggio_tools():
    return [count_to_three]
'''

ACME_PROMPTS = {"prepare_call", "account_week", "follow_up", "quarter_pipeline", "review_deal"}


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"prompts-{request.param}")
    site = install_pack(
        tmp / "site", "poggio-reporter", "1.0", {"poggio_reporter": REPORTER}, {"reporter": "poggio_reporter"}
    )

    def tokens(service, cli, acme, globex):
        return {
            "acme": service.create(acme, "acme all", cli).plaintext,
            "acme_revenue": service.create(acme, "acme revenue", cli, packs="revenue").plaintext,
            "globex": service.create(globex, "globex all", cli).plaintext,
        }

    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    yield from acme_and_globex(tmp, request.param, tokens, accounts=40, seed=3, extra_env={"PYTHONPATH": pythonpath})


def run(stack, token: str, mode: str, fn, **options):
    """``fn(client)`` with the SDK client connected as ``token`` in ``mode``."""

    async def main():
        headers = {"Authorization": f"Bearer {stack.tokens[token]}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(
                streamable_http_client(stack.server.mcp_url, http_client=http),
                mode=mode,
                client_info=Implementation(name="prompt-tests", version="1"),
                **options,
            ) as client:
                return await fn(client)

    return anyio.run(main)


MODES = ["auto", "legacy"]  # auto: 2026-07-28 with this server; legacy: 2025-11-25 with initialize


@pytest.mark.parametrize("mode", MODES)
def test_prompts_listed_per_pack_scope(stack, mode):
    async def names(c):
        return {p.name: p for p in (await c.list_prompts()).prompts}

    every = run(stack, "acme", mode, names)
    assert set(every) == ACME_PROMPTS
    assert [(a.name, a.required) for a in every["follow_up"].arguments] == [("email", True), ("topic", False)]
    assert every["prepare_call"].title == "Prepare for a call" and every["prepare_call"].description
    assert set(run(stack, "acme_revenue", mode, names)) == {"quarter_pipeline", "review_deal"}


@pytest.mark.parametrize("mode", MODES)
def test_prepare_call_embeds_the_callers_own_account(stack, mode):
    async def get(c):
        return await c.get_prompt("prepare_call", {"domain": "example.com"})

    acme = run(stack, "acme", mode, get)
    embedded = acme.messages[0].content
    assert embedded.type == "resource" and embedded.resource.uri == "poggio://accounts/example.com"
    assert "Example Corp" in embedded.resource.text and "Globex" not in json.dumps(acme.model_dump(mode="json"))
    globex = run(stack, "globex", mode, get)
    assert "Globex Example Division" in globex.messages[0].content.resource.text
    assert "Example Corp" not in json.dumps(globex.model_dump(mode="json"))


def _error(stack, token, mode, fn) -> MCPError:
    """The protocol error the request was answered with (the client raises it inside a group)."""
    with pytest.raises(BaseException) as caught:
        run(stack, token, mode, fn)
    found = [caught.value]
    while found:
        exc = found.pop()
        if isinstance(exc, MCPError):
            return exc
        found.extend(getattr(exc, "exceptions", ()))
    raise AssertionError(f"no protocol error in {caught.value!r}")


@pytest.mark.parametrize("mode", MODES)
def test_bad_prompt_requests_are_protocol_errors_naming_the_argument(stack, mode):
    unknown = _error(stack, "acme", mode, lambda c: c.get_prompt("no_such_prompt", {}))
    assert unknown.error.code == INVALID_PARAMS and "no_such_prompt" in unknown.error.message
    missing = _error(stack, "acme", mode, lambda c: c.get_prompt("prepare_call", {}))
    assert missing.error.code == INVALID_PARAMS and "'domain' is required" in missing.error.message
    extra = _error(stack, "acme", mode, lambda c: c.get_prompt("quarter_pipeline", {"year": "2020"}))
    assert "unknown argument 'year'" in extra.error.message
    elsewhere = _error(stack, "acme", mode, lambda c: c.get_prompt("prepare_call", {"domain": "zorblax.example"}))
    assert elsewhere.error.code == INVALID_PARAMS and "domain" in elsewhere.error.message
    assert "Zorblax Secret" not in elsewhere.error.message


@pytest.mark.parametrize("mode", MODES)
def test_prompt_and_completion_of_a_pack_out_of_scope_do_not_exist(stack, mode):
    refused = _error(stack, "acme_revenue", mode, lambda c: c.get_prompt("prepare_call", {"domain": "example.com"}))
    unknown = _error(stack, "acme_revenue", mode, lambda c: c.get_prompt("nothing_at_all", {}))
    assert refused.error.code == unknown.error.code == INVALID_PARAMS
    assert "Unknown prompt" in refused.error.message and "Unknown prompt" in unknown.error.message
    completion = _error(
        stack,
        "acme_revenue",
        mode,
        lambda c: c.complete(PromptReference(name="prepare_call"), {"name": "domain", "value": "ex"}),
    )
    assert completion.error.code == INVALID_PARAMS and "example" not in completion.error.message


def _complete(stack, token, mode, prompt, argument, value, context=None):
    async def go(c):
        return (await c.complete(PromptReference(name=prompt), {"name": argument, "value": value}, context)).completion

    return run(stack, token, mode, go)


@pytest.mark.parametrize("mode", MODES)
def test_completion_answers_from_the_callers_workspace_only(stack, mode):
    acme = _complete(stack, "acme", mode, "prepare_call", "domain", "exa")
    assert "example.com" in acme.values and all(v.startswith("exa") for v in acme.values)
    assert _complete(stack, "acme", mode, "prepare_call", "domain", "zorb").values == []
    assert _complete(stack, "globex", mode, "prepare_call", "domain", "zorb").values == ["zorblax.example"]
    assert _complete(stack, "globex", mode, "review_deal", "opportunity", "Zorblax").values == ["Zorblax Mega Deal"]
    assert _complete(stack, "acme", mode, "review_deal", "opportunity", "Zorblax").values == []
    emails = _complete(stack, "globex", mode, "follow_up", "email", "q")
    assert emails.values == ["quentin.zorblax@zorblax.example"] and emails.total == 1 and emails.has_more is False
    # an argument without a completer, and a prefix nothing starts with
    assert _complete(stack, "globex", mode, "follow_up", "topic", "a").values == []
    assert _complete(stack, "acme", mode, "prepare_call", "domain", "-nothing").values == []


def _complete_template(stack, token, mode, uri, argument, value):
    async def go(c):
        return (await c.complete(ResourceTemplateReference(uri=uri), {"name": argument, "value": value})).completion

    return run(stack, token, mode, go)


@pytest.mark.parametrize("mode", MODES)
def test_resource_template_variables_complete_from_the_callers_workspace(stack, mode):
    """``poggio://accounts/{domain}``'s domain completes as the prompts' domain argument does: the
    caller's own accounts only; the template of a pack out of scope has nothing to complete."""
    acme = _complete_template(stack, "acme", mode, "poggio://accounts/{domain}", "domain", "exa")
    assert "example.com" in acme.values and all(v.startswith("exa") for v in acme.values)
    assert _complete_template(stack, "acme", mode, "poggio://accounts/{domain}", "domain", "zorb").values == []
    globex = _complete_template(stack, "globex", mode, "poggio://accounts/{domain}", "domain", "zorb")
    assert globex.values == ["zorblax.example"]
    contacts = "poggio://accounts/{domain}/contacts{?cursor}"
    assert _complete_template(stack, "globex", mode, contacts, "domain", "zorb").values == ["zorblax.example"]
    refused = _error(
        stack,
        "acme_revenue",
        mode,
        lambda c: c.complete(
            ResourceTemplateReference(uri="poggio://accounts/{domain}"), {"name": "domain", "value": "e"}
        ),
    )
    assert refused.error.code == INVALID_PARAMS and "example" not in refused.error.message


def test_completion_is_bounded_with_has_more(stack):
    from poggio.storage.db import bind
    from poggio_accounts import Account

    every = _complete(stack, "acme", "auto", "prepare_call", "domain", "")
    with bind(stack.instance.database_url).connection_context():
        acme = Account.select().where(Account.domain == "example.com").first().workspace_id
        count = Account.select().where(Account.workspace == acme).count()
    assert count <= 100 and every.total == count == len(every.values) and every.has_more is False
    assert every.values == sorted(every.values)


def _call_with(stack, mode, *, progress: bool, log_level=None, set_level=None):
    seen: dict[str, list] = {"progress": [], "logs": []}

    async def on_progress(done, total, message):
        seen["progress"].append((done, total, message))

    async def on_log(params):
        seen["logs"].append((params.level, params.data))

    async def go(c):
        if set_level is not None:
            await c.set_logging_level(set_level)
        result = await c.call_tool("count_to_three", {}, progress_callback=on_progress if progress else None)
        return result

    options = {"logging_callback": on_log}
    if log_level is not None:
        options["log_level"] = log_level
    result = run(stack, "acme", mode, go, **options)
    assert not result.is_error and result.content[0].text == "three"
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_progress_notices_reach_the_caller_during_the_call(stack, mode):
    seen = _call_with(stack, mode, progress=True)
    assert seen["progress"] == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_log_notices_on_2025_era_protocol_default_to_info(stack):
    seen = _call_with(stack, "legacy", progress=False, set_level="debug")  # accepted, not kept (stateless)
    assert seen["logs"] == [("info", {"message": f"info {n}", "data": {"step": n}}) for n in (1, 2, 3)]


def test_log_notices_on_2026_follow_the_requests_own_level(stack):
    assert _call_with(stack, "auto", progress=False)["logs"] == []  # no opt-in: nothing sent
    debug = _call_with(stack, "auto", progress=False, log_level="debug")["logs"]
    assert [level for level, _ in debug] == ["debug", "info"] * 3
    assert [level for level, _ in _call_with(stack, "auto", progress=False, log_level="warning")["logs"]] == []


def _post(stack, body: dict, accept="application/json, text/event-stream", version="2025-11-25") -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {stack.tokens['acme']}",
        "Accept": accept,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": version,
    }
    return httpx.post(stack.server.mcp_url, json=body, headers=headers, timeout=30)


def test_only_calls_that_asked_for_notices_get_a_stream(stack):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_account", "arguments": {}}}
    call["params"]["arguments"] = {"domain": "example.com"}
    plain = _post(stack, call)
    assert plain.headers["content-type"].startswith("application/json")
    asked = {**call, "params": {**call["params"], "_meta": {"progressToken": "t1"}}}
    assert _post(stack, asked).headers["content-type"].startswith("application/json")  # get_account never reports
    counting = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "count_to_three"}}
    streamed = _post(stack, {**counting, "params": {**counting["params"], "_meta": {"progressToken": "t2"}}})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:") and line[5:].strip()
    ]
    assert [e["params"]["progress"] for e in events if e.get("method") == "notifications/progress"] == [1, 2, 3]
    assert events[-1]["result"]["content"][0]["text"] == "three"
    # a client that takes JSON only gets JSON, the notices dropped
    json_only = _post(
        stack, {**counting, "params": {**counting["params"], "_meta": {"progressToken": "t3"}}}, "application/json"
    )
    assert json_only.headers["content-type"].startswith("application/json")
    assert json_only.json()["result"]["content"][0]["text"] == "three"


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_set_level_is_accepted_on_2025_era_protocol(stack):
    async def go(c):
        return await c.set_logging_level("warning")

    assert run(stack, "acme", "legacy", go) is not None


def test_every_built_in_prompt_renders_from_the_workspace(stack):
    async def go(c):
        return [
            await c.get_prompt("review_deal", {"opportunity": "Zorblax Mega Deal"}),
            await c.get_prompt("follow_up", {"email": "Quentin.Zorblax@zorblax.example", "topic": "the renewal"}),
            await c.get_prompt("account_week", {"domain": "https://www.zorblax.example/"}),
            await c.get_prompt("quarter_pipeline", {}),
        ]

    deal, follow_up, week, quarter = (json.dumps(r.model_dump(mode="json")) for r in run(stack, "globex", "legacy", go))
    assert "Zorblax Mega Deal with Zorblax Secret Holdings (zorblax.example): negotiation, 987654.32 NOK" in deal
    assert "Quentin" in follow_up and "about the renewal" in follow_up
    assert (
        "Changes on Zorblax Secret Holdings (zorblax.example)" in week and "poggio://accounts/zorblax.example" in week
    )
    assert "Review the pipeline closing this quarter" in quarter
    for text in (deal, follow_up, week, quarter):
        assert "Example Corp" not in text  # Acme's
