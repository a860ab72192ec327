"""The second adversarial review: what a hostile body, a forged forwarded address, an id beyond any
column, a busy or full database, an unreachable Redis and a narrowly scoped token meet. Real server
processes over real HTTP, the lean path and the SDK path side by side where the answer must be the same."""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
import pytest
from instances import BACKENDS, ROOT, ServerProcess, _ServiceProcess, free_port, make_instance
from stacks import acme_and_globex

from poggio.commands import demo
from poggio.identity.tokens import TokenService
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import bind

ACCEPT = "application/json, text/event-stream"
MODERN, LEGACY = "2026-07-28", "2025-11-25"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def wait_for(predicate, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """One SQLite demo instance served twice: with the lean path (the default) and without it."""
    inst = make_instance(tmp_path_factory.mktemp("hostile2"), "sqlite")
    db = inst.activate()
    with db.connection_context():
        registry = PackRegistry.load()
        upgrade(registry)
        ws = demo.build(registry, "acme", accounts=20, seed=5).workspace
        tokens = {
            name: TokenService().create(ws, name, Actor.cli(), packs=packs).plaintext
            for name, packs in {
                "full": None,
                "accounts": ["accounts"],
                "writer": "accounts:write,contacts:write,revenue:write",
            }.items()
        }
    lean = ServerProcess(inst, extra_env={"POGGIO_MAX_BODY_BYTES": "400000"})
    try:
        sdk = ServerProcess(inst, extra_env={"POGGIO_MCP_LEAN_PATH": "false", "POGGIO_MAX_BODY_BYTES": "400000"})
    except BaseException:
        lean.stop()
        raise
    yield {"lean": lean, "sdk": sdk}, tokens, inst
    lean.stop()
    sdk.stop()


def post(server: ServerProcess, token: str, content: bytes, version: str = LEGACY, headers: dict | None = None):
    head = {
        "Authorization": f"Bearer {token}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": version,
        **(headers or {}),
    }
    return httpx.post(server.mcp_url, content=content, headers=head, timeout=30)


def call(server: ServerProcess, token: str, name: str, arguments: dict, version: str = LEGACY) -> httpx.Response:
    params = {"name": name, "arguments": arguments}
    headers = {}
    if version == MODERN:
        params["_meta"] = ENVELOPE
        headers = {"Mcp-Method": "tools/call", "Mcp-Name": name}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return post(server, token, json.dumps(body).encode(), version, headers)


def text_of(response: httpx.Response) -> str:
    payload = response.json()
    assert "result" in payload, payload
    return "\n".join(c.get("text", "") for c in payload["result"]["content"])


def activity(inst, token_name: str) -> list[tuple[str, str]]:
    from poggio.storage.models import Activity, ApiToken

    with bind(inst.database_url).connection_context():
        token_id = ApiToken.get(ApiToken.name == token_name).id
        return [
            (a.tool, a.outcome) for a in Activity.select().where(Activity.subject_id == token_id).order_by(Activity.id)
        ]


# -- item 7: a body nested too deep is a parse error, on both paths, and on the record ---------------------------
def nested(depth: int) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"update_account","arguments":'
        b'{"domain":' + b"[" * depth + b"]" * depth + b"}}}"
    )


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_deeply_nested_body_is_a_parse_error_not_a_500(pair, version):
    servers, tokens, inst = pair
    before = activity(inst, "full").count(("other", "tool_error"))
    answers = {}
    for name, server in servers.items():
        for body in (nested(100_000), b'{"method":"tools/call","params":' + b"[" * 100_000):
            response = post(server, tokens["full"], body, version)
            assert response.status_code == 400, (name, response.status_code, response.text[:300])
            assert response.json()["error"]["code"] == -32700, response.text
            answers.setdefault(body, set()).add(response.content)
        assert "Traceback" not in server.log() and "RecursionError" not in server.log()
    assert all(len(a) == 1 for a in answers.values()), answers  # the same bytes from both paths
    assert wait_for(lambda: activity(inst, "full").count(("other", "tool_error")) >= before + 4), activity(
        inst, "full"
    )[-10:]


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_deeply_nested_body_with_an_oauth_token_is_a_parse_error_not_a_500(pair, version):
    """An OAuth access token's calls pass the scope challenge, which reads the body too."""
    from oauth_support import mint

    from poggio.identity.oauth import OAuthService
    from poggio.storage.models import Membership, Workspace

    servers, _, inst = pair
    with bind(inst.database_url).connection_context():
        acme = Workspace.get(slug="acme")
        admin = Membership.get((Membership.workspace == acme) & (Membership.role == "admin")).user
        tokens = {
            name: mint(OAuthService(), acme, admin, {"accounts"}, server.mcp_url)[1]["access_token"]
            for name, server in servers.items()
        }
    answers = set()
    for name, server in servers.items():
        response = post(server, tokens[name], nested(100_000), version)
        assert response.status_code == 400, (name, response.status_code, response.text[:300])
        assert response.json()["error"]["code"] == -32700, response.text
        answers.add(response.content)
        assert "Traceback" not in server.log() and "RecursionError" not in server.log()
    assert len(answers) == 1, answers


@pytest.mark.parametrize("depth", [150, 199, 200, 201, 300, 900, 1100])
@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_nesting_near_the_parsers_limits_answers_alike(pair, version, depth):
    servers, tokens, _ = pair
    headers = {"Mcp-Method": "tools/call", "Mcp-Name": "get_account"} if version == MODERN else {}
    answers = [
        post(server, tokens["full"], nested(depth).replace(b"update_account", b"get_account"), version, headers)
        for server in servers.values()
    ]
    assert answers[0].status_code == answers[1].status_code and answers[0].content == answers[1].content, [
        (a.status_code, a.text[:200]) for a in answers
    ]
    assert answers[0].status_code in (200, 400)


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(pair):
    servers, tokens, _ = pair
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + b"[" * 300_000 + b"]" * 300_000 + b"}"
    for server in servers.values():
        response = post(server, tokens["full"], body)
        assert response.status_code == 413, response.text[:300]
        assert "Traceback" not in server.log()


# -- Redis configured but unreachable: 503 naming Redis, /readyz false ------------------------------------------
class HealthyServer(ServerProcess):
    """An MCP server process ready once /healthz answers (its /readyz may rightly say no)."""

    def __init__(self, instance, extra_env: dict[str, str]):
        from poggio.commands.cli import _mcp_argv
        from poggio.settings import load_settings

        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.url}/mcp"
        env = {**os.environ, **instance.env, "POGGIO_MCP_PUBLIC_URL": self.mcp_url, **extra_env}
        argv = _mcp_argv(load_settings(env), "127.0.0.1", self.port, 1)
        self._start(
            [*argv, "--timeout-graceful-shutdown", "5", "--log-level", "info"],
            env,
            f"mcp-{self.port}.log",
            f"{self.url}/healthz",
        )


@pytest.mark.parametrize("lean", ["true", "false"])
def test_unreachable_redis_is_a_503_naming_redis(pair, lean):
    _, tokens, inst = pair
    server = HealthyServer(
        inst, {"POGGIO_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "POGGIO_MCP_LEAN_PATH": lean}
    )
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
        for version in (LEGACY, MODERN):
            response = call(server, tokens["full"], "get_account", {"domain": "example.com"}, version)
            assert response.status_code == 503, (response.status_code, response.text[:300])
            assert "Redis" in response.json()["error_description"], response.text
            assert response.headers.get("retry-after")
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


# -- item 5: the app, not the server in front of it, decides whose X-Forwarded-For to believe --------------------
class GunicornServer(_ServiceProcess):
    """The MCP app as the README's production command runs it: gunicorn with uvicorn workers."""

    what = "MCP server under gunicorn"

    def __init__(self, instance, extra_env: dict[str, str]):
        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.url}/mcp"
        env = {
            **os.environ,
            **instance.env,
            "POGGIO_MCP_PUBLIC_URL": self.mcp_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            **extra_env,
        }
        self._start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "uvicorn.workers.UvicornWorker",
                "-w",
                "1",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                "5",
                "mcp_server.app:create_app()",
            ],
            env,
            f"gunicorn-{self.port}.log",
            f"{self.url}/readyz",
        )


@pytest.fixture(scope="module")
def fenced(pair):
    """A token of acme usable only from 10.9.9.9."""
    _, _, inst = pair
    with bind(inst.database_url).connection_context():
        from poggio.identity.workspaces import get_workspace

        return (
            TokenService().create(get_workspace("acme"), "fenced", Actor.cli(), allowed_ips=["10.9.9.9/32"]).plaintext
        )


@pytest.mark.parametrize("runner", ["gunicorn", "poggio mcp"])
@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_for_from_loopback_is_believed_only_from_a_trusted_proxy(pair, fenced, runner, trusted):
    _, _, inst = pair
    env = {"POGGIO_TRUSTED_PROXIES": trusted}
    server = GunicornServer(inst, env) if runner == "gunicorn" else ServerProcess(inst, extra_env=env)
    try:
        head = {"X-Forwarded-For": "10.9.9.9"}
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        forged = post(server, fenced, body, headers=head)
        plain = post(server, fenced, body)
    finally:
        server.stop()
    assert plain.status_code == 403 and "127.0.0.1" in plain.json()["error_description"]
    if trusted:
        assert forged.status_code == 200, forged.text[:300]
    else:
        assert forged.status_code == 403 and "127.0.0.1" in forged.json()["error_description"], forged.text[:300]


# -- a stack on each database: acme (the demo) and globex, tokens by scope ------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    def tokens(service, cli, acme, globex):
        return {
            "writer": service.create(
                acme, "writer", cli, packs="accounts:write,contacts:write,revenue:write"
            ).plaintext,
            "accounts": service.create(acme, "accounts only", cli, packs="accounts").plaintext,
            "accounts_writer": service.create(acme, "accounts writer", cli, packs="accounts:write").plaintext,
            "accounts_contacts": service.create(
                acme, "accounts and contacts", cli, packs="accounts,contacts"
            ).plaintext,
        }

    yield from acme_and_globex(
        tmp_path_factory.mktemp(f"hostile2-{request.param}"),
        request.param,
        tokens,
        accounts=10,
        seed=4,
        extra_env={"POGGIO_WRITE_RATE_LIMIT": "100000/minute"},
    )


def tool_text(stack, token: str, name: str, arguments: dict, version: str = LEGACY) -> tuple[bool, str]:
    response = call(stack.server, stack.tokens[token], name, arguments, version)
    assert response.status_code == 200, response.text[:300]
    return response.json()["result"].get("isError", False), text_of(response)


def portal_of(stack):
    from portal_client import Browser

    from poggio.settings import load_settings
    from portal import create_app

    app = create_app(load_settings({**os.environ, **stack.instance.env}))
    app.config["TESTING"] = True
    browser = Browser(app.test_client())
    assert browser.sign_in("admin@acme.example", "poggio-demo-admin").status_code == 302  # the demo's admin
    return browser


# -- item 10: every id bounded at the edge ------------------------------------------------------------------------
def integer_fields(schema, path=""):
    """(path, field schema) of every integer in a JSON schema, however nested."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            yield path, schema
        for key, value in schema.items():
            yield from integer_fields(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from integer_fields(value, f"{path}/{i}")


def test_every_integer_argument_of_every_tool_is_bounded(pair):
    servers, tokens, _ = pair
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    tools = post(servers["sdk"], tokens["writer"], body).json()["result"]["tools"]
    fields = [(t["name"] + p, f) for t in tools for p, f in integer_fields(t["inputSchema"])]
    assert {"update_opportunity/properties/id", "add_note/properties/opportunity_id/anyOf/0"} <= {w for w, _ in fields}
    for where, field in fields:
        assert field.get("maximum", 2**64) <= 2**63 - 1, where
        assert "minimum" in field, where
        if where.split("/properties/")[-1].split("/")[0].split("_")[-1] == "id":
            assert field["minimum"] >= 1 and field["maximum"] <= 2**31 - 1, (where, field)


@pytest.mark.parametrize("version", [LEGACY, MODERN])
@pytest.mark.parametrize(
    "name,arguments,field",
    [
        ("update_opportunity", {"id": 2**70, "stage": "won"}, "id"),
        ("update_opportunity", {"id": 2**40, "stage": "won"}, "id"),
        ("add_note", {"domain": "example.com", "text": "hi", "opportunity_id": 2**70}, "opportunity_id"),
        ("add_note", {"domain": "example.com", "text": "hi", "opportunity_id": 2**33}, "opportunity_id"),
    ],
)
def test_an_id_beyond_any_row_is_a_tool_error_naming_it(stack, version, name, arguments, field):
    error, text = tool_text(stack, "writer", name, arguments, version)
    assert error and f"'{field}'" in text and "less than or equal to 2147483647" in text, text
    assert "internal error" not in text


@pytest.mark.parametrize("subject", ["99999999999999999999", "2147483648", "²", "0"])
def test_an_export_of_an_id_beyond_any_row_is_a_400(stack, subject):
    browser = portal_of(stack)
    for fmt in ("csv", "jsonl"):
        response = browser.get(f"/settings/mcp/activity/export.{fmt}?kind=token&subject={subject}")
        assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])


@pytest.mark.parametrize("ident", ["99999999999999999999", "2147483648", "²"])
def test_looking_up_an_id_beyond_any_row_finds_nothing(stack, ident):
    from poggio.errors import NotFound
    from poggio.identity.oauth import OAuthService
    from poggio.identity.workspaces import get_workspace

    with bind(stack.instance.database_url).connection_context():
        acme = get_workspace("acme")
        for look_up in (
            lambda: TokenService().get(acme, ident),
            lambda: OAuthService("p").grant(acme, ident),
            lambda: OAuthService("p").workspace_client(acme, ident),
        ):
            with pytest.raises(NotFound):
                look_up()


# -- item 11: a busy or full database, and a create that lost a race, each in its own words ----------------------
BUSY = "busy with other writes"
FULL = "out of disk space"


def test_a_write_while_another_holds_the_write_lock_says_the_database_is_busy(pair):
    """SQLite: another connection holds the write lock longer than the busy timeout."""
    import sqlite3

    servers, tokens, inst = pair
    holder = sqlite3.connect(inst.path / "poggio.db", timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        response = call(servers["lean"], tokens["writer"], "update_account", {"domain": "example.com", "employees": 7})
    finally:
        holder.rollback()
        holder.close()
    text = text_of(response)
    assert response.json()["result"]["isError"] and BUSY in text and "try again shortly" in text, text
    assert "narrow the request" not in text and "internal error" not in text


def signed_in_portal(monkeypatch):
    """The portal in this process on the ``instance`` fixture's SQLite database, an admin signed in."""
    from portal_client import Browser

    from poggio.identity.workspaces import create_user, create_workspace
    from portal import create_app

    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    acme = create_workspace("acme", "Acme", True, Actor.cli())
    create_user("admin@acme.example", "correct horse battery", acme, "admin", Actor.cli())
    app = create_app()
    app.config["TESTING"] = True
    browser = Browser(app.test_client())
    assert browser.sign_in("admin@acme.example").status_code == 302
    browser.get("/settings/mcp/")
    return browser


def test_the_portal_answers_503_while_the_database_is_busy(instance, monkeypatch):
    """SQLite: another connection holds the write lock longer than the busy timeout."""
    import sqlite3

    browser = signed_in_portal(monkeypatch)
    holder = sqlite3.connect(instance.path / "poggio.db", timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        response = browser.post("/settings/mcp/tokens", {"name": "made while busy", "expiry": "30"})
    finally:
        holder.rollback()
        holder.close()
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and BUSY in page, (response.status_code, page[:500])
    assert response.headers["Retry-After"]


@pytest.mark.parametrize("tool", ["create_account", "create_contact"])
def test_concurrent_creates_of_one_record_answer_already_exists(stack, tool):
    """Twelve calls creating one new record at once: one creates it, the others are told it exists,
    as a call after it is (on PostgreSQL the unique index decides the race)."""
    import concurrent.futures

    key = f"race{time.monotonic_ns()}"
    arguments = (
        {"domain": f"{key}.example", "name": "Race Inc"}
        if tool == "create_account"
        else {"email": f"{key}@example.com", "first_name": "Ra", "last_name": "Ce", "account_domain": "example.com"}
    )

    def create(_):
        return tool_text(stack, "writer", tool, arguments)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(create, range(12)))
    sequential_error, sequential = create(0)
    assert sequential_error and "already exists" in sequential
    assert [error for error, _ in answers].count(False) == 1, answers
    assert all(text == sequential for error, text in answers if error), answers


def _fill_up(db) -> None:
    """A SQLite database that cannot grow: at most the pages it has now, on every connection (the
    open ones and the ones opened from now on), as a full disk would leave it."""
    from playhouse.pool import PooledDatabase

    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    db._pragmas = [*db._pragmas, ("max_page_count", pages)]
    if isinstance(db, PooledDatabase):
        db.close_idle()
    db.execute_sql(f"PRAGMA max_page_count = {pages}")


def test_a_full_database_is_out_of_disk_space_for_a_tool(instance):
    import asyncio

    from mcp_server.app import create_app
    from poggio.storage.db import database

    ws = demo.build(PackRegistry.load(), "acme", accounts=5, seed=2).workspace
    token = TokenService().create(ws, "filler", Actor.cli(), packs="accounts:write").plaintext
    app = create_app()
    starlette = app
    while not hasattr(starlette, "router"):
        starlette = starlette.app
    from poggio_accounts.models import Account

    demo_domain = Account.select().where(Account.workspace == ws).first().domain
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "add_note", "arguments": {"domain": demo_domain, "text": "x" * 5000}},
    }
    head = {
        "Authorization": f"Bearer {token}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": LEGACY,
    }

    async def main():
        texts = []
        async with starlette.router.lifespan_context(starlette):
            _fill_up(database.obj)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8001") as client:
                for _ in range(40):  # until the pages it had are used up
                    answer = (await client.post("/mcp", json=body, headers=head)).json()["result"]
                    if answer.get("isError"):
                        texts.append(answer["content"][0]["text"])
                        break
        return texts

    texts = asyncio.run(main())
    assert texts and FULL in texts[0] and "internal error" not in texts[0], texts


def test_the_portal_answers_503_when_the_database_is_full(instance, monkeypatch):
    from poggio.storage.db import database

    browser = signed_in_portal(monkeypatch)
    _fill_up(database.obj)
    statuses = []
    for i in range(40):
        response = browser.post(
            "/settings/mcp/tokens",
            {"name": f"token {i} " + "n" * 80, "expiry": "30", "allowed_ips": "\n".join(["10.0.0.1"] * 50)},
        )
        statuses.append(response.status_code)
        if response.status_code >= 500:
            break
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and FULL in page, (statuses, page[:500])


def test_postgresql_out_of_disk_and_lock_not_available_are_recognised():
    """A PostgreSQL server out of disk cannot be had in a test: the driver's errors, as peewee re-raises
    them, are what the MCP server and the portal classify."""
    import peewee
    import psycopg2.errors

    from poggio.errors import database_trouble

    def wrapped(driver_error):
        try:
            try:
                raise driver_error
            except psycopg2.Error as exc:
                raise peewee.OperationalError(exc, *exc.args) from exc
        except peewee.OperationalError as exc:
            return exc

    assert database_trouble(wrapped(psycopg2.errors.DiskFull("could not extend file"))) == "full"
    assert database_trouble(wrapped(psycopg2.errors.LockNotAvailable("could not obtain lock"))) == "busy"
    assert database_trouble(wrapped(psycopg2.errors.UniqueViolation("duplicate key"))) is None
    assert database_trouble(peewee.OperationalError("no such table: x")) is None


# -- item 3: a note's links read as the reader's packs allow --------------------------------------------------------
@pytest.fixture(scope="module")
def linked_note(stack):
    """A note on an acme account about one of its contacts and one of its opportunities: (domain,
    the contact's e-mail and name, the opportunity's id and name)."""
    from poggio.identity.workspaces import get_workspace
    from poggio_contacts.models import Contact
    from poggio_revenue.models import Opportunity

    with bind(stack.instance.database_url).connection_context():
        acme = get_workspace("acme")
        contact = next(
            c
            for c in Contact.select().where(Contact.workspace == acme).order_by(Contact.id)
            if Opportunity.select().where(Opportunity.account == c.account_id).exists()
        )
        deal = Opportunity.select().where(Opportunity.account == contact.account_id).first()
        domain = contact.account.domain
    error, text = tool_text(
        stack,
        "writer",
        "add_note",
        {"domain": domain, "text": "Talked budget", "contact_email": contact.email, "opportunity_id": deal.id},
    )
    assert not error, text
    return domain, contact.email, f"{contact.first_name} {contact.last_name}", deal.id, deal.name


def profile(stack, token: str, domain: str) -> tuple[str, dict]:
    response = call(stack.server, stack.tokens[token], "get_account", {"domain": domain})
    result = response.json()["result"]
    assert not result.get("isError"), result
    return text_of(response), next(n for n in result["structuredContent"]["notes"] if n["text"] == "Talked budget")


def test_a_note_shows_an_accounts_only_token_no_other_packs_data(stack, linked_note):
    domain, email, person, deal_id, deal_name = linked_note
    error, text = tool_text(stack, "accounts", "get_contact", {"email": email})
    assert error  # the token may not read contacts...
    text, note = profile(stack, "accounts", domain)
    for secret in (email, person, deal_name):  # ...nor read them through a note
        assert secret not in text and secret not in json.dumps(note), (secret, text, note)
    assert note["contact_email"] is None and note["opportunity_id"] is None, note
    assert "Talked budget" in text and "outside this token's tool packs" in text, text


def test_a_note_shows_each_link_whose_pack_the_reader_has(stack, linked_note):
    domain, email, person, deal_id, deal_name = linked_note
    text, note = profile(stack, "accounts_contacts", domain)
    assert email in text and person in text and deal_name not in text and str(deal_id) not in note["links"]
    assert note["contact_email"] == email and note["opportunity_id"] is None, note
    text, note = profile(stack, "writer", domain)
    assert email in text and person in text and deal_name in text, text
    assert note["contact_email"] == email and note["opportunity_id"] == deal_id, note


def test_a_deeply_nested_registration_is_refused_like_any_other_non_json(instance):
    """The portal's one JSON body from strangers: OAuth dynamic client registration."""
    from portal import create_app

    app = create_app()
    app.config["TESTING"] = True
    client = app.test_client()
    for body in ('{"redirect_uris":' + "[" * 100_000, '{"redirect_uris":' + "[" * 5000 + "]" * 5000 + "}"):
        response = client.post("/oauth/register", data=body, content_type="application/json")
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_client_metadata", (
            response.status_code,
            response.get_data(as_text=True)[:300],
        )


def test_a_deeply_nested_client_metadata_document_is_not_json(tmp_path, monkeypatch):
    """The portal's other JSON from strangers: a Client ID Metadata Document it fetches (over https)."""
    import http.server
    import ssl
    import threading

    from oauth_support import self_signed_certificate

    from portal.client_metadata import MetadataError, fetch_client_metadata

    class Nested(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = b"[" * 8_000  # deeper than the parser goes, within the 16 KB a document may have
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Nested)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(MetadataError, match="not JSON"):
            fetch_client_metadata(f"https://127.0.0.1:{server.server_port}/client.json", allow_private=True)
    finally:
        server.shutdown()
        server.server_close()
