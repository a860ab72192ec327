"""A member's request for an app, end to end against a real MCP server process (SQLite and
PostgreSQL): the member asks on the portal's consent page, the app's calls get 403 approval_pending,
an admin approves through the portal's route and the very next call works with the same token (no
reconnect); a denial ends the grant; the member's removal, deactivation or a policy that no longer
lets members connect apps ends it; the listed-apps policy refuses an unlisted app with an audit line.

The portal is Flask's test client on the same database (as tests/portal do); the MCP server is a real
uvicorn process, asked with plain HTTP and with the SDK's client."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from helpers import Mcp
from instances import BACKENDS, ServerProcess, drop_instance, make_instance
from portal_client import PASSWORD, Browser

from poggio.commands import demo
from poggio.identity import app_access
from poggio.identity.oauth import OAuthService
from poggio.identity.workspaces import create_user, deactivate_user, remove_user
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import bind, utcnow
from poggio.storage.models import AuditEvent, OAuthCode, OAuthGrant, User, Workspace

CLI = Actor.cli()
REDIRECT = "http://127.0.0.1:9999/callback"


class Stack:
    def __init__(self, instance, server, portal):
        self.instance, self.server, self.portal = instance, server, portal
        self.url = server.mcp_url

    def browser(self, email: str) -> Browser:
        browser = Browser(self.portal.test_client())
        assert browser.sign_in(email).status_code == 302
        return browser

    def connect(self, email: str, client_id: str | None = None, name: str = "Claude") -> str:
        """``email`` connects (or asks for) a newly registered app on the consent page: the access token."""
        browser = self.browser(email)
        if client_id is None:
            r = browser.client.post(
                "/oauth/register",
                json={"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
            )
            client_id = r.get_json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        url = authorize(client_id, challenge, self.url)
        page = browser.get(url).get_data(as_text=True)
        seal = re.search(r'name="seal" value="([^"]+)"', page).group(1)
        workspace = re.search(r'name="workspace" value="(\d+)"', page).group(1)
        r = browser.post(
            url, {"seal": seal, "workspace": workspace, "decision": "approve", "packs": ["accounts"], "lifetime": "30"}
        )
        code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
        r = browser.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "resource": self.url,
            },
        )
        assert r.status_code == 200, r.get_json()
        return r.get_json()["access_token"]


def authorize(client_id: str, challenge: str, resource: str) -> str:
    return "/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": resource,
            "scope": "accounts:read",
        }
    )


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp(f"requests-{request.param}"), request.param)
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        acme = demo.build(registry, "acme", accounts=20, seed=3).workspace
        create_user("boss@acme.example", PASSWORD, acme, "admin", CLI)
        for n in range(6):
            create_user(f"member{n}@acme.example", PASSWORD, acme, "member", CLI)
        app_access.set_app_policy(acme, CLI, access="members")
    server = ServerProcess(inst)
    import os

    from poggio.settings import load_settings
    from portal import create_app

    portal = create_app(load_settings({**os.environ, **inst.env, "POGGIO_MCP_PUBLIC_URL": server.mcp_url}))
    portal.config["TESTING"] = True
    try:
        yield Stack(inst, server, portal)
    finally:
        server.stop()
        drop_instance(inst)


@pytest.fixture(autouse=True)
def _bound(stack):
    db = bind(stack.instance.database_url)
    db.connect(reuse_if_open=True)  # (the portal's requests close it after them: peewee opens it again)
    yield
    if not db.is_closed():
        db.close()


def tools_list(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.post(
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )


def acme() -> Workspace:
    return Workspace.get(Workspace.slug == "acme")


def pending_grant(email: str) -> OAuthGrant:
    return (
        OAuthGrant.select()
        .join(User, on=(OAuthGrant.user == User.id))
        .where((User.email == email) & (OAuthGrant.approval == "pending"))
        .get()
    )


def test_a_request_is_refused_until_an_admin_approves_then_works_without_reconnecting(stack):
    token = stack.connect("member0@acme.example")
    with httpx.Client(timeout=20) as http:
        refused = tools_list(http, stack.url, token)
        assert refused.status_code == 403
        body = refused.json()
        assert body["error"] == "approval_pending" and "administrator" in body["error_description"]
        assert "www-authenticate" not in refused.headers  # not a credential problem: no sign-in again
        assert Mcp(stack.url, token).status_of_failure() == 403  # the SDK's client hears the same
        admin = stack.browser("boss@acme.example")
        admin.get("/settings/mcp/")
        grant = pending_grant("member0@acme.example")
        assert admin.post(f"/settings/mcp/requests/{grant.id}/approve", htmx=True).status_code == 200
        ok = tools_list(http, stack.url, token)  # the same connection, the same token
        assert ok.status_code == 200 and "search_accounts" in ok.text
    result = Mcp(stack.url, token).call("search_accounts", {"query": "a", "limit": 1})
    assert not result.is_error


def test_deny_ends_the_grant(stack):
    token = stack.connect("member1@acme.example")
    admin = stack.browser("boss@acme.example")
    admin.get("/settings/mcp/")
    grant = pending_grant("member1@acme.example")
    assert admin.post(f"/settings/mcp/requests/{grant.id}/deny").status_code == 302
    with httpx.Client(timeout=20) as http:
        assert tools_list(http, stack.url, token).status_code == 401
    assert AuditEvent.select().where(AuditEvent.action == "oauth.request_denied").exists()


@pytest.mark.parametrize("end", ["removed", "deactivated", "policy"])
def test_the_members_grant_ends_with_the_member(stack, end):
    email = {
        "removed": "member2@acme.example",
        "deactivated": "member3@acme.example",
        "policy": "member4@acme.example",
    }[end]
    token = stack.connect(email)
    app_access.decide(pending_grant(email), True, CLI)
    with httpx.Client(timeout=20) as http:
        assert tools_list(http, stack.url, token).status_code == 200
        member = User.get(User.email == email)
        if end == "removed":
            remove_user(member, acme(), CLI)
        elif end == "deactivated":
            deactivate_user(member, CLI)
        else:
            app_access.set_app_policy(acme(), CLI, access="admins")
        try:
            assert tools_list(http, stack.url, token).status_code == 401
        finally:
            app_access.set_app_policy(acme(), CLI, access="members")


def test_the_listed_apps_policy_refuses_unlisted_apps_with_an_audit_line(stack):
    service = OAuthService()
    listed = service.register(
        {"client_name": "Listed", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    ).client
    unlisted = service.register(
        {"client_name": "Unlisted", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    ).client
    document = "https://apps.example.org/mcp/client.json"  # known and fresh: the portal does not fetch it
    service.remember_metadata_client(
        document, {"client_name": "Doc app", "redirect_uris": [REDIRECT]}, utcnow().replace(year=utcnow().year + 1)
    )
    app_access.set_app_policy(acme(), CLI, apps="listed", allowed=[listed.client_id, "https://claude.ai/"])
    try:
        browser = stack.browser("boss@acme.example")
        codes = OAuthCode.select().count()
        for client_id in (unlisted.client_id, document):
            r = browser.get(authorize(client_id, "x" * 43, stack.url))
            query = parse_qs(urlsplit(r.headers["Location"]).query)
            assert r.status_code == 302 and query["error"] == ["access_denied"], client_id
            assert "listed" in query["error_description"][0]
            assert (
                AuditEvent.select()
                .where((AuditEvent.action == "oauth.refused_by_policy") & AuditEvent.detail.contains(client_id))
                .exists()
            )
        assert OAuthCode.select().count() == codes
        token = stack.connect("boss@acme.example", client_id=listed.client_id)
        with httpx.Client(timeout=20) as http:
            assert tools_list(http, stack.url, token).status_code == 200
    finally:
        app_access.set_app_policy(acme(), CLI, apps="any")
