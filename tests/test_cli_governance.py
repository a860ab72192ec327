"""The governance commands: workspace policy, token create with limits, token rotate with a grace
period, activity export; and the core migration that brings them goes down and up again."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from click.testing import CliRunner

from poggio.commands.cli import main
from poggio.security.token_format import TOKEN_PATTERN
from poggio.storage.db import utcnow
from poggio.storage.models import Activity, ApiToken, AuditEvent, Workspace


@pytest.fixture
def run(instance):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    assert invoke("workspace", "create", "acme", "--name", "Acme", "--mcp").exit_code == 0
    return invoke


def test_workspace_policy_shown_changed_and_obeyed(run):
    shown = run("workspace", "policy", "acme")
    assert shown.exit_code == 0 and "90 days by default" in shown.output and "no maximum lifetime" in shown.output
    forever = run("token", "create", "--workspace", "acme", "--name", "forever", "--expires-in", "never")
    assert forever.exit_code == 0
    changed = run("workspace", "policy", "acme", "--default-expiry", "14d", "--max-lifetime", "30d")
    assert changed.exit_code == 0 and "1 token(s)" in changed.output and "every token expires" in changed.output
    assert ApiToken.get(ApiToken.name == "forever").expires_at <= utcnow() + dt.timedelta(days=30)
    assert "(shortened by policy)" in run("token", "list", "--workspace", "acme").output
    refused = run("token", "create", "--workspace", "acme", "--name", "never", "--expires-in", "never")
    assert refused.exit_code == 1 and "requires an expiry" in refused.output and "Traceback" not in refused.output
    too_long = run("token", "create", "--workspace", "acme", "--name", "long", "--expires-in", "60d")
    assert too_long.exit_code == 1 and "at most 30 days" in too_long.output
    default = run("token", "create", "--workspace", "acme", "--name", "default")
    assert default.exit_code == 0
    lifetime = ApiToken.get(ApiToken.name == "default").expires_at - utcnow()
    assert dt.timedelta(days=13) < lifetime <= dt.timedelta(days=14)
    bad = run("workspace", "policy", "acme", "--allow-no-expiry")
    assert bad.exit_code == 1 and "cannot be allowed with a maximum lifetime" in bad.output
    assert run("workspace", "policy", "acme", "--max-lifetime", "soon").exit_code == 1
    assert AuditEvent.select().where(AuditEvent.action == "workspace.policy_changed").count() == 1


def test_workspace_tools_listed_switched_and_refused(run):
    from poggio.storage.models import AuditEvent

    listed = run("workspace", "tools", "acme")
    assert listed.exit_code == 0
    rows = {line.split()[1]: line.split() for line in listed.output.splitlines()[1:]}
    assert rows["get_account"][:3] == ["accounts", "get_account", "on"]
    assert "read-only" in rows["get_account"][3] and "idempotent" in listed.output
    assert rows["update_account"][3:] == ["write,", "destructive,", "idempotent"]
    switched = run("workspace", "tools", "acme", "--off", "get_account", "--off", "add_note")
    assert switched.exit_code == 0 and "get_account: switched off." in switched.output
    assert "add_note: switched off." in switched.output
    again = run("workspace", "tools", "acme", "--off", "get_account")
    assert again.exit_code == 0 and "Nothing changed" in again.output
    rows = {line.split()[1]: line.split() for line in run("workspace", "tools", "acme").output.splitlines()[1:]}
    assert rows["get_account"][2] == "off" and rows["add_note"][2] == "off" and rows["search_accounts"][2] == "on"
    back = run("workspace", "tools", "acme", "--on", "get_account")
    assert back.exit_code == 0 and "get_account: switched on." in back.output
    assert Workspace.get(Workspace.slug == "acme").tools_off == "add_note"  # the copy the MCP server reads
    bad = run("workspace", "tools", "acme", "--off", "get_acount")
    assert bad.exit_code == 1 and "unknown tool 'get_acount'" in bad.output and "Traceback" not in bad.output
    both = run("workspace", "tools", "acme", "--off", "add_note", "--on", "add_note")
    assert both.exit_code == 1 and "both off and on" in both.output
    assert run("workspace", "tools", "nope").exit_code == 1
    assert AuditEvent.select().where(AuditEvent.action == "workspace.tool_switched").count() == 3


def test_token_create_narrowed_to_tools(run):
    made = run(
        "token", "create", "--workspace", "acme", "--name", "two", "--packs", "accounts,revenue",
        "--tools", "get_account,list_opportunities",
    )  # fmt: skip
    assert made.exit_code == 0 and TOKEN_PATTERN.fullmatch(made.stdout.strip())
    assert ApiToken.get(ApiToken.name == "two").tools == "get_account,list_opportunities"
    assert "only the tools get_account, list_opportunities" in run("token", "list", "--workspace", "acme").output
    outside = run(
        "token", "create", "--workspace", "acme", "--name", "x", "--packs", "accounts", "--tools", "get_contact"
    )
    assert outside.exit_code == 1 and "outside the chosen packs: get_contact" in outside.output
    unknown = run("token", "create", "--workspace", "acme", "--name", "y", "--tools", "get_acount")
    assert unknown.exit_code == 1 and "unknown tool(s): get_acount" in unknown.output
    write = run("token", "create", "--workspace", "acme", "--name", "z", "--tools", "update_account")
    assert write.exit_code == 1 and "write tool needs write access" in write.output
    assert not ApiToken.select().where(ApiToken.name.in_(["x", "y", "z"])).exists()


def test_oauth_list_shows_a_grant_narrowed_to_tools(run):
    from poggio.identity.oauth import OAuthService
    from poggio.identity.workspaces import create_user, get_workspace
    from poggio.records.audit import Actor
    from poggio.storage.models import OAuthCode

    acme = get_workspace("acme")
    admin = create_user("admin@acme.example", "correct horse battery", acme, "admin", Actor.cli())
    service = OAuthService()
    client = service.register({"client_name": "Narrow app", "redirect_uris": ["http://127.0.0.1:9/cb"]}).client
    service.issue_code(
        code="n" * 43,
        client=client,
        user=admin,
        workspace=acme,
        packs={"accounts": "read"},
        redirect_uri="http://127.0.0.1:9/cb",
        resource="http://127.0.0.1:8001/mcp",
        code_challenge="x" * 43,
        code_challenge_method="S256",
        grant_days=30,
        actor=Actor(admin),
        tools="get_account",
    )
    assert service.grant_from_code(OAuthCode.get()).tools == "get_account"
    listed = run("oauth", "list", "--workspace", "acme").output
    assert "accounts (read); only the tools get_account" in listed


def test_token_create_with_networks_and_rate_limit(run):
    result = run(
        "token",
        "create",
        "--workspace",
        "acme",
        "--name",
        "office",
        "--allow-ip",
        "203.0.113.0/24",
        "--allow-ip",
        "2001:db8::/48",
        "--rate-limit",
        "10/minute",
    )
    assert result.exit_code == 0 and TOKEN_PATTERN.fullmatch(result.stdout.strip())
    token = ApiToken.get(ApiToken.name == "office")
    assert token.allowed_ips == "203.0.113.0/24,2001:db8::/48" and token.rate_limit == "10/minute"
    assert "from 203.0.113.0/24, 2001:db8::/48; limit 10/minute" in run("token", "list", "--workspace", "acme").output
    bad = run("token", "create", "--workspace", "acme", "--name", "x", "--allow-ip", "somewhere")
    assert bad.exit_code == 1 and "not an IP address or network" in bad.output
    fast = run("token", "create", "--workspace", "acme", "--name", "y", "--rate-limit", "100000/minute")
    assert fast.exit_code == 1 and "below the installation's limit" in fast.output


def test_token_rotate_with_grace(run):
    first = run("token", "create", "--workspace", "acme", "--name", "rotating").stdout.strip()
    rotated = run("token", "rotate", "--workspace", "acme", "rotating", "--grace", "24h")
    assert rotated.exit_code == 0
    new = rotated.stdout.strip()
    assert TOKEN_PATTERN.fullmatch(new) and new != first and "works until" in rotated.stderr
    token = ApiToken.get(ApiToken.name == "rotating")
    assert token.previous_last_four == first[-4:] and token.previous_expires_at - token.rotated_at == dt.timedelta(
        hours=24
    )
    assert "replaced by rotation" in run("token", "list", "--workspace", "acme").output
    again = run("token", "rotate", "--workspace", "acme", "rotating")
    assert again.exit_code == 0 and "no longer works" in again.stderr
    assert ApiToken.get(ApiToken.name == "rotating").previous_digest is None
    assert run("token", "rotate", "--workspace", "acme", "rotating", "--grace", "30d").exit_code == 1


def test_activity_export_jsonl_and_csv(run):
    ws = Workspace.get(slug="acme")
    token = ApiToken.get_by_id(
        int(run("token", "create", "--workspace", "acme", "--name", "agent").stderr.split("(id ")[1].split(")")[0])
    )
    now = utcnow()
    Activity.insert_many(
        [
            {
                "workspace": ws.id,
                "kind": "token",
                "subject_id": token.id,
                "at": now - dt.timedelta(days=d),
                "tool": "get_account",
                "outcome": "ok" if d else "refused",
                "latency_ms": 2.0,
                "client": "claude-ai 1.0",
                "ip": "203.0.113.5",
            }
            for d in range(5)
        ]
    ).execute()
    lines = run("activity", "export", "--workspace", "acme").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 5 and records[0]["subject"] == "agent" and records[0]["outcome"] == "refused"
    assert records[0]["at"] > records[-1]["at"]
    recent = run("activity", "export", "--workspace", "acme", "--since", "36h", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(recent)))
    assert len(rows) == 2 and rows[0]["ip"] == "203.0.113.5"
    bad = run("activity", "export", "--workspace", "acme", "--since", "last tuesday")
    assert bad.exit_code == 1 and "since" in bad.output and "Traceback" not in bad.output
    assert run("activity", "export", "--workspace", "nope").exit_code == 1


def test_governance_migration_goes_down_and_up(run):
    from poggio.runtime.plugins import PackRegistry
    from poggio.runtime.schema import runners
    from poggio.storage.db import database

    core = dict(runners(PackRegistry.load()))["core"]
    assert core.down() == ["0050_tool_switches"]  # tools switched off per workspace, narrowing to named tools
    assert "tool_switch" not in database.get_tables()
    assert "tools" not in {c.name for c in database.get_columns("api_token")}
    assert "tools_off" not in {c.name for c in database.get_columns("workspace")}
    assert core.down() == ["0040_webhooks"]  # webhook endpoints, their outbox and delivery log
    assert not {"webhook_endpoint", "webhook_message", "webhook_attempt"} & set(database.get_tables())
    assert core.down() == ["0032_id_jag"]  # the connected apps an identity provider made (ID-JAG)
    assert "managed_grant" not in database.get_tables()
    assert core.down() == ["0031_scim"]  # SCIM tokens, users, groups, tokens flagged for review
    assert "scim_user" not in database.get_tables() and "token_review" not in database.get_tables()
    assert core.down() == ["0030_sso"]  # each workspace's OpenID provider, who signed in through it
    assert "sso_provider" not in database.get_tables()
    assert core.down() == ["0011_app_access"]  # the app policy and members' requests
    assert "app_access" not in {c.name for c in database.get_columns("workspace")}
    assert "approval" not in {c.name for c in database.get_columns("oauth_grant")}
    assert core.down() == ["0010_oauth_application_type"]  # web or native, as the client registered
    assert "application_type" not in {c.name for c in database.get_columns("oauth_client")}
    assert core.down() == ["0009_oauth_refresh_grace"]  # the refresh grace's sealed pairs
    assert "grace_sealed" not in {c.name for c in database.get_columns("oauth_token")}
    assert core.down() == ["0008_oauth_assertion"]  # private_key_jwt's jti, seen
    assert "oauth_assertion" not in database.get_tables()
    assert core.down() == ["0007_oauth_client_by_kind"]  # the index of registered apps by age
    assert ("kind", "created_at") not in {tuple(i.columns) for i in database.get_indexes("oauth_client")}
    assert core.down() == ["0006_search_term_by_ref"]  # the search index's covering index (issue 13)
    assert {tuple(i.columns) for i in database.get_indexes("search_term")} >= {("kind", "ref_id")}
    assert core.down() == ["0005_idempotency"]  # the write tools' keys (issue 15) came after
    assert "idempotency_key" not in database.get_tables()
    assert core.down() == ["0004_governance"]
    assert "activity" not in database.get_tables()
    assert "allowed_ips" not in {c.name for c in database.get_columns("api_token")}
    result = run("db", "upgrade")
    assert result.exit_code == 0 and "0004_governance" in result.output and "0005_idempotency" in result.output
    assert "activity" in database.get_tables()
