"""Admins decide which apps and who may ask, in the core and on the command line: the app policy
(`poggio workspace policy --apps/--allow-app/--app-access`), members' requests (`poggio oauth
requests/approve/deny`), the approval_pending refusal of the access-token check, and the grant that
lives no longer than its member."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from poggio.commands.cli import main
from poggio.identity import app_access
from poggio.identity.oauth import OAuthService
from poggio.identity.tokens import TokenRejected
from poggio.identity.workspaces import create_user, create_workspace, deactivate_user, remove_user
from poggio.records.audit import Actor
from poggio.storage.models import AuditEvent, OAuthGrant, Workspace

MCP = "http://127.0.0.1:8001/mcp"
CLI = Actor.cli()


@pytest.fixture
def run(instance):
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def acme(instance):
    ws = create_workspace("acme", "Acme", True, CLI)
    create_user("admin@acme.example", "correct horse battery", ws, "admin", CLI)
    create_user("member@acme.example", "correct horse battery", ws, "member", CLI)
    return ws


def connect(
    ws: Workspace, email: str, name: str = "Claude", pending: bool = True, client=None
) -> tuple[OAuthGrant, str]:
    """The consent and token exchange of ``email`` for a registered app: its grant and access token."""
    from poggio.storage.models import User

    service = OAuthService()
    client = client or service.register({"client_name": name, "redirect_uris": ["http://127.0.0.1:5/cb"]}).client
    user = User.get(User.email == email)
    service.issue_code(
        code=f"code-{client.id}-{email}",
        client=client,
        user=user,
        workspace=ws,
        packs=["accounts"],
        redirect_uri="http://127.0.0.1:5/cb",
        resource=MCP,
        code_challenge="x" * 43,
        code_challenge_method="S256",
        grant_days=30,
        actor=Actor(user),
        pending=pending,
    )
    grant = service.grant_from_code(service.find_code(f"code-{client.id}-{email}", client))
    return grant, service.issue_tokens(grant)["access_token"]


def reason(token: str) -> str | None:
    try:
        OAuthService().verify_access(token, MCP)
    except TokenRejected as exc:
        return exc.reason
    return None


def actions(ws) -> list[str]:
    return [e.action for e in AuditEvent.select().where(AuditEvent.workspace == ws.id).order_by(AuditEvent.id)]


def test_policy_is_shown_and_changed_from_the_command_line(run, acme):
    shown = run("workspace", "policy", "acme")
    assert shown.exit_code == 0 and "any app may connect; admins connect apps" in shown.output
    changed = run(
        "workspace",
        "policy",
        "acme",
        "--apps",
        "listed",
        "--allow-app",
        "https://claude.ai/",
        "--allow-app",
        "pgc_abcdefghijklmnop",
        "--app-access",
        "members",
    )
    assert changed.exit_code == 0, changed.output
    assert "only listed apps may connect (2 listed); members may request apps, an admin approves" in changed.output
    assert "allowed: https://claude.ai/" in changed.output
    rules = app_access.AppPolicy.of(Workspace.get_by_id(acme.id))
    assert rules == app_access.AppPolicy("listed", ("https://claude.ai/", "pgc_abcdefghijklmnop"), "members")
    assert "workspace.app_policy_changed" in actions(acme)


@pytest.mark.parametrize(
    "args,says",
    [
        (["--allow-app", "Claude"], "cannot be listed"),
        (["--allow-app", "http://claude.ai/"], "neither an https URL"),
        (["--allow-app", "https://claude.ai"], "add a path"),
        (["--apps", "listed"], "list at least one app"),
        (["--apps", "some"], "Invalid value for '--apps'"),
        (["--app-access", "everyone"], "Invalid value for '--app-access'"),
    ],
)
def test_bad_policy_input_is_refused_and_changes_nothing(run, acme, args, says):
    result = run("workspace", "policy", "acme", *args)
    assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output
    assert app_access.AppPolicy.of(Workspace.get_by_id(acme.id)) == app_access.AppPolicy("any", (), "admins")
    assert "workspace.app_policy_changed" not in actions(acme)


def test_listed_apps_admit_by_client_id_or_url_prefix(acme):
    service = OAuthService()
    dynamic = service.register({"client_name": "Claude", "redirect_uris": ["http://127.0.0.1:5/cb"]}).client
    from poggio.storage.db import utcnow

    claude = service.remember_metadata_client(
        "https://claude.ai/oauth/client.json",
        {"client_name": "Claude", "redirect_uris": ["https://claude.ai/cb"]},
        utcnow(),
    )
    evil = service.remember_metadata_client(
        "https://claude.ai.evil.example/client.json",
        {"client_name": "Claude", "redirect_uris": ["https://evil.example/cb"]},
        utcnow(),
    )
    rules = app_access.AppPolicy("listed", ("https://claude.ai/", dynamic.client_id), "admins")
    assert rules.allows(claude) and rules.allows(dynamic) and not rules.allows(evil)
    assert not app_access.AppPolicy("listed", ("https://claude.ai/oauth/client.json",), "admins").allows(dynamic)
    assert app_access.identity(claude).label == "verified: identified by its URL on claude.ai"
    assert app_access.identity(dynamic).how == "self-asserted" and "well-known" in app_access.identity(dynamic).warning
    other = service.register({"client_name": "Acme sync", "redirect_uris": ["http://127.0.0.1:5/cb"]}).client
    assert app_access.identity(other).warning is None


def test_a_members_request_is_pending_until_an_admin_approves_on_the_command_line(run, acme):
    run("workspace", "policy", "acme", "--app-access", "members")
    grant, token = connect(acme, "member@acme.example")
    assert reason(token) == "approval_pending"
    listed = run("oauth", "requests", "--workspace", "acme")
    assert f"g{grant.id}" in listed.output and "member@acme.example" in listed.output
    assert "accounts (read)" in listed.output and "self-asserted" in listed.output and "Warning" in listed.output
    listing = run("oauth", "list", "--workspace", "acme").output
    assert "pending" in listing and "self-asserted name" in listing and "claims a well-known name" in listing
    approved = run("oauth", "approve", "--workspace", "acme", f"g{grant.id}")
    assert approved.exit_code == 0 and "next call works" in approved.output
    assert reason(token) is None  # the same token, no reconnect
    assert run("oauth", "requests", "--workspace", "acme").output.strip() == "No pending requests."
    again = run("oauth", "deny", "--workspace", "acme", str(grant.id))
    assert again.exit_code == 1 and "already decided" in again.output and reason(token) is None
    assert {"oauth.requested", "oauth.request_approved"} <= set(actions(acme))


def test_deny_ends_the_grant(run, acme):
    run("workspace", "policy", "acme", "--app-access", "members")
    grant, token = connect(acme, "member@acme.example")
    denied = run("oauth", "deny", "--workspace", "acme", str(grant.id))
    assert denied.exit_code == 0 and "has ended" in denied.output
    assert reason(token) == "invalid"
    assert "oauth.request_denied" in actions(acme)
    assert run("oauth", "approve", "--workspace", "acme", "g999").exit_code == 1


def test_requests_are_scoped_by_workspace(run, acme):
    other = create_workspace("other", "Other", True, CLI)
    create_user("member@acme.example", "correct horse battery", other, "member", CLI)
    app_access.set_app_policy(other, CLI, access="members")
    grant, token = connect(other, "member@acme.example")
    assert run("oauth", "requests", "--workspace", "acme").output.strip() == "No pending requests."
    assert run("oauth", "approve", "--workspace", "acme", str(grant.id)).exit_code == 1
    assert reason(token) == "approval_pending"


@pytest.mark.parametrize("end", ["removed", "deactivated", "policy", "demoted_admin"])
def test_a_members_grant_lives_no_longer_than_the_member(acme, end):
    from poggio.storage.models import User

    app_access.set_app_policy(acme, CLI, access="members")
    grant, token = connect(acme, "member@acme.example")
    app_access.decide(app_access.request_of(acme, grant.id), True, CLI)
    assert reason(token) is None
    member = User.get(User.email == "member@acme.example")
    if end == "removed":
        remove_user(member, acme, CLI)
    elif end == "deactivated":
        deactivate_user(member, CLI)
    elif end == "policy":
        _, ended = app_access.set_app_policy(Workspace.get_by_id(acme.id), CLI, access="admins")
        assert ended == 1
    else:  # promoted, connects as an admin, then demoted: as today, an admin's approval ends with the role
        create_user("member@acme.example", "x", acme, "admin", CLI)
        _, token = connect(acme, "member@acme.example", pending=False)
        assert reason(token) is None
        create_user("member@acme.example", "x", acme, "member", CLI)
    assert reason(token) == "invalid"


def test_listing_an_app_disconnects_those_not_listed(acme):
    kept, kept_token = connect(acme, "admin@acme.example", pending=False)
    _, other_token = connect(acme, "admin@acme.example", name="Other", pending=False)
    _, ended = app_access.set_app_policy(acme, CLI, apps="listed", allowed=[kept.client.client_id])
    assert ended == 1 and reason(kept_token) is None and reason(other_token) == "invalid"
