"""The ``poggio`` command, every subcommand, in-process through click's runner and as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from instances import ROOT, free_port

from poggio.commands.cli import main
from poggio.security.token_format import TOKEN_PATTERN
from poggio.storage.models import ApiToken, AuditEvent, Membership, User, Workspace


@pytest.fixture
def run(instance):
    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        result = runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)
        return result

    return invoke


def test_db_upgrade_is_idempotent(run):
    result = run("db", "upgrade")
    assert result.exit_code == 0 and "up to date" in result.output


def test_a_pack_migration_goes_down_and_up_again(run):
    """The revenue pack's day totals (0002) can be reverted, and re-applied filled from the opportunities."""
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import runners
    from poggio.storage.db import database

    assert run("demo", "--accounts", "30").exit_code == 0
    totals = "SELECT workspace_id, currency, stage, close_date, count, amount FROM revenue_day ORDER BY 1, 2, 3, 4"
    kept = database.execute_sql(totals).fetchall()
    assert (
        kept and sum(row[4] for row in kept) == database.execute_sql("SELECT COUNT(*) FROM opportunity").fetchone()[0]
    )
    revenue = dict(runners(PackRegistry.load()))["revenue"]
    assert revenue.down() == ["0004_opportunity_names"]
    assert "opportunity_workspace_id_name" not in {i.name for i in database.get_indexes("opportunity")}
    assert revenue.down() == ["0003_updated_at"]
    assert "updated_at" not in {c.name for c in database.get_columns("opportunity")}
    assert revenue.down() == ["0002_revenue_days"]
    assert "revenue_day" not in database.get_tables()
    result = run("db", "upgrade")
    assert result.exit_code == 0 and "0002_revenue_days" in result.output and "0003_updated_at" in result.output
    assert "opportunity_workspace_id_name" in {i.name for i in database.get_indexes("opportunity")}
    assert database.execute_sql(totals).fetchall() == kept
    assert database.execute_sql("SELECT COUNT(*) FROM opportunity WHERE updated_at IS NULL").fetchone()[0] == 0


def test_workspace_create_and_entitle(run):
    assert run("workspace", "create", "acme", "--name", "Acme Inc.", "--mcp").exit_code == 0
    ws = Workspace.get(slug="acme")
    assert ws.mcp_enabled and ws.name == "Acme Inc."
    duplicate = run("workspace", "create", "acme", "--name", "Again")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad = run("workspace", "create", "Not A Slug", "--name", "x")
    assert bad.exit_code == 1 and "slug" in bad.output and "Traceback" not in bad.output
    assert run("workspace", "entitle", "acme", "--no-mcp").exit_code == 0
    assert not Workspace.get(slug="acme").mcp_enabled
    assert AuditEvent.select().where(AuditEvent.action == "workspace.entitlement_changed").count() == 1
    assert run("workspace", "entitle", "nope", "--mcp").exit_code == 1


def test_user_create_with_env_password_and_prompt(run, monkeypatch):
    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    run("workspace", "create", "acme", "--name", "Acme", "--mcp")
    result = run(
        "user",
        "create",
        "Ada@Acme.example",
        "--workspace",
        "acme",
        "--role",
        "admin",
        env={"POGGIO_PASSWORD": "a-long-password"},
    )
    assert result.exit_code == 0, result.output
    user = User.get(email="ada@acme.example")
    assert user.password_hash.startswith("$2") and "a-long-password" not in user.password_hash
    assert Membership.get(user=user).role == "admin"
    prompted = run(
        "user", "create", "bob@acme.example", "--workspace", "acme", input="another-password\nanother-password\n"
    )
    assert prompted.exit_code == 0 and Membership.get(user=User.get(email="bob@acme.example")).role == "member"
    short = run("user", "create", "carl@acme.example", "--workspace", "acme", env={"POGGIO_PASSWORD": "short"})
    assert short.exit_code == 1 and "password" in short.output


def test_user_password_and_remove_end_sessions(run, monkeypatch):
    from poggio.identity import sessions
    from poggio.identity.sessions import UserSession
    from poggio.identity.workspaces import check_password

    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    run("workspace", "create", "acme", "--name", "Acme", "--mcp")
    run("user", "create", "ada@acme.example", "--workspace", "acme", env={"POGGIO_PASSWORD": "a-long-password"})
    ada = User.get(email="ada@acme.example")
    sessions.start(ada)
    changed = run("user", "password", "Ada@acme.example", env={"POGGIO_PASSWORD": "a-newer-password"})
    assert changed.exit_code == 0, changed.output
    assert check_password(User.get(email="ada@acme.example"), "a-newer-password") and UserSession.select().count() == 0
    assert run("user", "password", "nobody@acme.example", env={"POGGIO_PASSWORD": "a-newer-password"}).exit_code == 1
    sessions.start(ada)
    removed = run("user", "remove", "ada@acme.example", "--workspace", "acme")
    assert removed.exit_code == 0, removed.output
    assert UserSession.select().count() == 0 and not User.get(email="ada@acme.example").is_active
    again = run("user", "remove", "ada@acme.example", "--workspace", "acme")
    assert again.exit_code == 1 and "not a member" in again.output


def test_token_create_list_revoke(run):
    run("workspace", "create", "acme", "--name", "Acme", "--mcp")
    created = run("token", "create", "--workspace", "acme", "--name", "Slack agent", "--packs", "accounts")
    assert created.exit_code == 0
    plaintext = created.stdout.strip()
    assert TOKEN_PATTERN.fullmatch(plaintext)  # stdout holds the token alone
    assert "shown only now" in created.stderr
    never = run("token", "create", "--workspace", "acme", "--name", "Forever", "--expires-in", "never")
    assert "never expires" in never.stderr
    listed = run("token", "list", "--workspace", "acme")
    assert "Slack agent" in listed.output and f"pgo_…{plaintext[-4:]}" in listed.output
    assert plaintext not in listed.output
    assert run("token", "create", "--workspace", "acme", "--name", "x", "--packs", "nope").exit_code == 1
    assert run("token", "create", "--workspace", "acme", "--name", "x", "--expires-in", "2001-01-01").exit_code == 1
    revoked = run("token", "revoke", "--workspace", "acme", "Slack agent")
    assert revoked.exit_code == 0 and ApiToken.get(name="Slack agent").revoked_at is not None
    by_id = run("token", "revoke", "--workspace", "acme", str(ApiToken.get(name="Forever").id))
    assert by_id.exit_code == 0
    assert "already revoked" in run("token", "revoke", "--workspace", "acme", "Slack agent").output
    missing = run("token", "revoke", "--workspace", "acme", "ghost")
    assert missing.exit_code == 1 and "no token" in missing.output


def test_token_and_oauth_client_packs_take_read_or_write(run):
    """--packs accounts:write,contacts,revenue:write: a pack without a suffix is read; a bad level is
    refused naming what is allowed, and nothing is created."""
    from poggio.storage.models import OAuthClient

    run("workspace", "create", "acme", "--name", "Acme", "--mcp")
    made = run(
        "token", "create", "--workspace", "acme", "--name", "Agent", "--packs", "accounts:write,contacts,revenue:write"
    )
    assert made.exit_code == 0 and ApiToken.get(name="Agent").packs == "accounts:write,contacts,revenue:write"
    listed = run("token", "list", "--workspace", "acme").output
    assert "accounts (read and write), contacts (read), revenue (read and write)" in listed
    bad = run("token", "create", "--workspace", "acme", "--name", "Bad", "--packs", "accounts:admin")
    assert bad.exit_code == 1 and "read or write" in bad.output and ApiToken.get_or_none(name="Bad") is None
    client = run(
        "oauth", "client", "create", "--workspace", "acme", "--name", "Sync", "--packs", "accounts:write,revenue"
    )
    assert client.exit_code == 0 and OAuthClient.get(name="Sync").packs == "accounts:write,revenue"
    assert "accounts (read and write), revenue (read)" in run("oauth", "list", "--workspace", "acme").output


def test_import_all_or_nothing_with_line_numbers(run, tmp_path):
    run("workspace", "create", "acme", "--name", "Acme", "--mcp")
    good = tmp_path / "accounts.csv"
    good.write_text(
        "domain,name,industry,employees,country,description\n"
        "example.com,Example Corp,Software,1200,US,First\n"
        "acme.io,Acme,Retail,,de,Second\n",
        encoding="utf-8",
    )
    result = run("import", "accounts", str(good), "--workspace", "acme")
    assert result.exit_code == 0 and "Imported 2 accounts" in result.output
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "email,first_name,last_name,title,account_domain\n"
        "ada@example.com,Ada,Lovelace,CTO,example.com\n"
        "not-an-email,Bad,Row,CEO,example.com\n"
        "bob@acme.io,Bob,Builder,CEO,unknown.example\n"
    )
    bad = run("import", "contacts", str(contacts), "--workspace", "acme")
    assert bad.exit_code == 1
    assert "contacts.csv:3: email:" in bad.stderr and "contacts.csv:4: account_domain:" in bad.stderr
    assert "nothing was imported" in bad.output
    from poggio_contacts.models import Contact

    assert Contact.select().count() == 0
    opps = tmp_path / "opps.csv"
    opps.write_text(
        "account_domain,name,stage,amount,currency,close_date\n"
        "example.com,Renewal,won,12500.00,USD,2026-03-01\n"
        "example.com,Upsell,maybe,1,USD,2026-03-01\n"
    )
    bad_opps = run("import", "opportunities", str(opps), "--workspace", "acme")
    assert bad_opps.exit_code == 1 and "opps.csv:3: stage:" in bad_opps.stderr
    header = tmp_path / "header.csv"
    header.write_text("email,name\nx@y.z,X\n")
    wrong = run("import", "contacts", str(header), "--workspace", "acme")
    assert wrong.exit_code == 1 and "missing column" in wrong.output
    binary = tmp_path / "latin1.csv"
    binary.write_bytes(
        "domain,name,industry,employees,country,description\nm\xfcller.de,M\xfcller,,,,\n".encode("latin-1")
    )
    assert "not UTF-8" in run("import", "accounts", str(binary), "--workspace", "acme").output


def test_demo_is_deterministic_and_idempotent(run, instance):
    first = run("demo", "--accounts", "120", "--seed", "3")
    assert first.exit_code == 0, first.output
    assert "admin@acme.example" in first.output and "password" in first.output
    from poggio_accounts.models import Account
    from poggio_contacts.models import Contact
    from poggio_revenue.models import Opportunity

    counts = (Account.select().count(), Contact.select().count(), Opportunity.select().count())
    names = [a.name for a in Account.select().order_by(Account.id).limit(20)]
    assert counts[0] == 120 and counts[1] > 120 and counts[2] > 100
    assert Account.get(domain="example.com").name == "Example Corp"
    again = run("demo", "--accounts", "120", "--seed", "3")
    assert "already has data" in again.output
    # `make run` runs `poggio demo` every time: the login is printed every time, not only on first build.
    assert "Sign in to the portal as admin@acme.example with password poggio-demo-admin" in again.output
    assert (Account.select().count(), Contact.select().count(), Opportunity.select().count()) == counts
    assert Workspace.get(slug="acme").mcp_enabled
    other = run("demo", "--workspace", "beta", "--accounts", "120", "--seed", "3")
    assert other.exit_code == 0
    beta = Workspace.get(slug="beta")
    assert [a.name for a in Account.select().where(Account.workspace == beta).order_by(Account.id).limit(20)] == names


def test_packs_list(run):
    result = run("packs", "list")
    assert result.exit_code == 0
    for name in (
        "accounts",
        "contacts",
        "revenue",
        "search_accounts",
        "get_account",
        "search_contacts",
        "get_contact",
        "get_revenue_summary",
        "list_opportunities",
    ):
        assert name in result.output


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def _poggio(*args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "poggio", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_mcp_and_portal_commands_serve(instance):
    env = {**os.environ, **instance.env}
    port = free_port()
    mcp = _poggio("mcp", "--port", str(port), env={**env, "POGGIO_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}/mcp"})
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", mcp)
        assert httpx.post(f"http://127.0.0.1:{port}/mcp", json={}).status_code == 401
    finally:
        mcp.send_signal(signal.SIGINT)
        assert mcp.wait(timeout=20) == 0
    port = free_port()
    portal = _poggio("portal", "--port", str(port), "--workers", "1", env=env)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", portal)
    finally:
        portal.send_signal(signal.SIGTERM)
        assert portal.wait(timeout=20) == 0


def _open_connections(portal_port: int, mcp_port: int) -> list:
    """What a browser and a client leave open after use: a keep-alive connection to each server, and
    a socket a browser opened in advance to the portal and never sent a request on."""
    import socket

    portal, mcp = httpx.Client(), httpx.Client()
    assert portal.get(f"http://127.0.0.1:{portal_port}/sign-in").status_code == 200
    assert mcp.get(f"http://127.0.0.1:{mcp_port}/healthz").status_code == 200
    preconnected = socket.create_connection(("127.0.0.1", portal_port))
    # the portal's worker has taken the preconnected socket once another request gets through after it
    assert httpx.get(f"http://127.0.0.1:{portal_port}/healthz").status_code == 200
    return [portal, mcp, preconnected]


@pytest.mark.parametrize("how", ["ctrl-c", "sigint-ignored-at-start", "sigterm", "sigkill"])
def test_up_runs_both_and_stops_them_within_3_s(instance, how):
    """``poggio up`` stops both servers within 3 s after use, however it is stopped: Ctrl-C (SIGINT to
    its process group, as a terminal sends it), SIGINT to it alone when it was started with SIGINT
    ignored (a shell's background job), SIGTERM; and killed outright, its servers die with it."""
    from processes import descendants, wait_gone

    portal_port, mcp_port = free_port(), free_port()
    env = {**os.environ, **instance.env, "POGGIO_PORTAL_PORT": str(portal_port), "POGGIO_MCP_PORT": str(mcp_port)}
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if how == "sigint-ignored-at-start" else None
    up = subprocess.Popen(
        [sys.executable, "-m", "poggio", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
        preexec_fn=ignore_sigint,
    )
    servers: list[int] = []
    try:
        _wait_http(f"http://127.0.0.1:{mcp_port}/healthz", up)
        _wait_http(f"http://127.0.0.1:{portal_port}/healthz", up)
        servers = descendants(up.pid)
        assert len(servers) >= 3, servers  # gunicorn, its worker, uvicorn
        connections = _open_connections(portal_port, mcp_port)
        started = time.monotonic()
        if how == "ctrl-c":
            os.killpg(up.pid, signal.SIGINT)
        else:
            up.send_signal({"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}.get(how, signal.SIGINT))
        code = up.wait(timeout=30)
        left = wait_gone(servers, timeout=30)
        took = time.monotonic() - started
        for connection in connections:
            connection.close()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        wait_gone(servers, timeout=10)
    output = up.stdout.read()
    assert not left, f"still running after {how}: {left}\n{output}"
    # 3 s on a machine with a core to spare; a busier one (more runnable processes than cores) stretches
    # every process's shutdown alike, so the bound grows with the load it measured
    bound = 3.0 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert took < bound, f"{how} took {took:.1f} s to stop both servers (bound {bound:.1f} s):\n{output}"
    assert code == (-signal.SIGKILL if how == "sigkill" else 0), output
    assert "Traceback" not in output and "[ERROR]" not in output and "SIGKILL" not in output, output
    for port in (portal_port, mcp_port):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_settings_errors_are_one_line(instance, monkeypatch):
    monkeypatch.setenv("POGGIO_MCP_PORT", "eighty")
    result = CliRunner().invoke(main, ["packs", "list"])
    assert result.exit_code == 1 and "POGGIO_MCP_PORT must be a number" in result.output
    assert re.search(r"Traceback", result.output) is None


@pytest.mark.parametrize(
    "args,env_port,setting",
    [
        (["up"], "POGGIO_PORTAL_PORT", "POGGIO_PORTAL_PORT"),
        (["up"], "POGGIO_MCP_PORT", "POGGIO_MCP_PORT"),
        (["mcp"], "POGGIO_MCP_PORT", "POGGIO_MCP_PORT or --port"),
        (["mcp", "--port", "{port}"], None, "POGGIO_MCP_PORT or --port"),
        (["portal", "--workers", "1"], "POGGIO_PORTAL_PORT", "POGGIO_PORTAL_PORT or --port"),
        (["portal", "--port", "{port}"], None, "POGGIO_PORTAL_PORT or --port"),
    ],
    ids=["up-portal", "up-mcp", "mcp-setting", "mcp-option", "portal-setting", "portal-option"],
)
def test_a_busy_port_is_named_before_any_banner(instance, args, env_port, setting):
    """Another program listens on the port: one line names the port and what moves it, exit 1, no banner."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            **instance.env,
            "POGGIO_PORTAL_PORT": str(free_port()),
            "POGGIO_MCP_PORT": str(free_port()),
        }
        if env_port:
            env[env_port] = str(port)
        proc = _poggio(*[a.format(port=port) for a in args], env=env)
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = proc.stdout.read()
    assert code == 1, output
    assert f"Port {port} on 127.0.0.1 is already in use" in output and setting in output, output
    assert not re.search(r"running|Listening at|Portal: http|Traceback", output, re.I), output


def test_activity_export_writes_lists_the_changes_of_write_tools(run):
    """The audit log's write rows, in the activity export: who, which tool, before and after."""
    import json

    from poggio.runtime.plugins import PackRegistry
    from poggio.testing import tool_context

    assert run("demo", "--accounts", "3").exit_code == 0
    registry = PackRegistry.load()
    ws = Workspace.get(slug="acme")
    ctx = tool_context(ws.id, "update_account", registry=registry)
    registry.tool("update_account")(ctx, domain="example.com", name="=Example Group")
    out = run("activity", "export", "--workspace", "acme", "--writes", "--since", "1d").stdout
    event = json.loads(out.splitlines()[0])
    assert event["tool"] == "update_account" and event["target"] == "account example.com"
    assert event["before"] == {"name": "Example Corp"} and event["after"] == {"name": "=Example Group"}
    csv_out = run("activity", "export", "--workspace", "acme", "--writes", "--format", "csv").stdout
    header, row = csv_out.splitlines()[:2]
    assert header == "at,actor,kind,subject_id,tool,target,before,after" and "update_account" in row
    assert '""name"": ""Example Corp""' in row  # before and after as JSON in their cells


def _bare_env(**extra: str) -> dict[str, str]:
    """A deployment's environment: no POGGIO_ setting of the test instance, only what is given."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("POGGIO_")}, **extra}


def test_commands_create_the_instance_folder_they_need(tmp_path):
    """With POGGIO_SECRET_KEY set (as a deployment sets it), nothing else creates the instance folder:
    the commands that open the default SQLite database create it."""
    env = _bare_env(POGGIO_SECRET_KEY="a-deployment-secret")
    upgrade = subprocess.run(
        [sys.executable, "-m", "poggio", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "instance" / "poggio.db").exists()
    assert not (tmp_path / "instance" / "secret_key").exists()
    nested = tmp_path / "a" / "b"
    created = subprocess.run(
        [sys.executable, "-m", "poggio", "workspace", "create", "acme", "--name", "Acme"],
        cwd=tmp_path,
        env={**env, "POGGIO_INSTANCE_PATH": str(nested)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 1 and "Traceback" not in created.stderr  # no schema yet: said in one line
    assert (nested / "poggio.db").exists()


@pytest.mark.parametrize(
    "case",
    ["unwritable-instance", "instance-under-a-file", "sqlite-folder-unwritable", "postgres-unreachable", "not-a-url"],
)
@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["token", "list", "--workspace", "acme"], ["mcp"], ["up"]],
    ids=["db-upgrade", "token-list", "mcp", "up"],
)
def test_a_database_that_cannot_be_opened_is_one_line(tmp_path, case, command):
    """A missing or read-only folder, or a database URL that cannot be opened: one line that says what
    and which setting to change, exit status 1, never a traceback."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    env = _bare_env(POGGIO_PORTAL_PORT=str(free_port()), POGGIO_MCP_PORT=str(free_port()))
    setting = {
        # /proc takes no new folders, even from root
        "unwritable-instance": ("POGGIO_INSTANCE_PATH", {"POGGIO_INSTANCE_PATH": "/proc/poggio-instance"}),
        "instance-under-a-file": (
            "POGGIO_INSTANCE_PATH",
            {"POGGIO_INSTANCE_PATH": str(a_file / "instance"), "POGGIO_SECRET_KEY": "k"},
        ),
        "sqlite-folder-unwritable": (
            "POGGIO_DATABASE_URL",
            {"POGGIO_DATABASE_URL": "sqlite:////proc/poggio/p.db", "POGGIO_SECRET_KEY": "k"},
        ),
        "postgres-unreachable": (
            "POGGIO_DATABASE_URL",
            {
                "POGGIO_DATABASE_URL": f"postgresql://poggio:hunter2@127.0.0.1:{free_port()}/poggio",
                "POGGIO_SECRET_KEY": "k",
            },
        ),
        "not-a-url": ("POGGIO_DATABASE_URL", {"POGGIO_DATABASE_URL": "poggio.db", "POGGIO_SECRET_KEY": "k"}),
    }[case]
    result = subprocess.run(
        [sys.executable, "-m", "poggio", *command],
        cwd=tmp_path,
        env={**env, **setting[1]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and setting[0] in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert "hunter2" not in output


@pytest.mark.parametrize(
    "typed,pack,folder",
    [
        ("crm_notes", "crm_notes", "poggio-crm-notes"),
        ("my-pack", "my_pack", "poggio-my-pack"),
        ("poggio-forecast", "forecast", "poggio-forecast"),
        ("Poggio-Sales.Weather", "sales_weather", "poggio-sales-weather"),
    ],
)
def test_pack_new_takes_the_pack_or_the_distribution_name(tmp_path, monkeypatch, typed, pack, folder):
    """A person types the distribution name as often as the pack name: both make the same pack, and
    the command says what it made."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["pack", "new", typed])
    assert result.exit_code == 0, result.output
    assert f"Created the {pack} tool pack (distribution {folder}, module poggio_{pack}) in {folder}" in result.output
    pyproject = (tmp_path / folder / "pyproject.toml").read_text()
    assert f'name = "{folder}"' in pyproject and f'{pack} = "poggio_{pack}"' in pyproject
    assert (tmp_path / folder / f"poggio_{pack}" / "__init__.py").exists()


@pytest.mark.parametrize("typed", ["9lives", "-", "a b", "x" * 31, "crm/notes"])
def test_pack_new_refuses_what_is_no_pack_name_in_one_line(tmp_path, monkeypatch, typed):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["pack", "new", typed])
    assert result.exit_code == 1 and "is not a pack name" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def _http_get(sock, path: str) -> bytes:
    """One GET on an open socket, its whole response read (status line, headers, Content-Length body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data  # closed by the server
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def test_both_servers_keep_an_idle_connection_longer_than_clients_pool_it(instance):
    """A client (httpx: 5 s) reuses a pooled connection that was idle for a while: the server must not
    be closing it at that moment (a POST on it would fail with a read error, and is not retried)."""
    import socket

    from instances import PortalProcess, ServerProcess

    servers = [ServerProcess(instance)]
    try:
        servers.append(PortalProcess(instance))
        sockets = []
        for server in servers:
            sock = socket.create_connection(("127.0.0.1", server.port))
            assert _http_get(sock, "/healthz").startswith(b"HTTP/1.1 200")
            sockets.append(sock)
        time.sleep(6)  # the idle time is what is tested: longer than httpx keeps a connection in its pool
        for sock in sockets:
            assert _http_get(sock, "/healthz").startswith(b"HTTP/1.1 200"), (
                "the server closed an idle connection after <6 s"
            )
            sock.close()
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize(
    "workers, redis, warned", [(4, None, True), (1, None, False), (4, "redis://127.0.0.1:6379/0", False)]
)
def test_portal_warns_when_its_registration_limit_is_per_worker(instance, monkeypatch, workers, redis, warned):
    """Without Redis each portal worker counts OAuth client registrations by itself: the limit holds
    once per worker, which the operator is told when the portal starts (as the MCP server does)."""
    started = []
    monkeypatch.setattr(os, "execv", lambda *argv: started.append(argv))
    monkeypatch.setenv("POGGIO_PORTAL_PORT", str(free_port()))
    monkeypatch.setenv("POGGIO_OAUTH_REGISTRATION_LIMIT", "20/hour")
    if redis:
        monkeypatch.setenv("POGGIO_REDIS_URL", redis)
    result = CliRunner().invoke(main, ["portal", "--workers", str(workers)])
    assert result.exit_code == 0 and started, result.output
    message = (
        "POGGIO_OAUTH_REGISTRATION_LIMIT (20/hour per address) is counted per worker: 4 portal workers "
        "without POGGIO_REDIS_URL let an address register up to 4 times as many apps."
    )
    assert (message in " ".join(result.output.split())) is warned, result.output
