"""The MCP server as OAuth resource server, against a real server process on SQLite and PostgreSQL:
protected resource metadata, the 401 challenge, OAuth access tokens verified like API tokens
(workspace, packs, revocation on the next request, usage), and tokens bound to this server's URL.

Grants and tokens are made through the core's OAuthService, as the portal makes them; the whole
browser flow is in tests/e2e/test_oauth_flow.py."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import Mcp
from instances import BACKENDS, ServerProcess, drop_instance, make_instance
from oauth_support import mint

from poggio.commands import demo
from poggio.identity.oauth import OAuthService, normalise_resource
from poggio.identity.workspaces import create_user, create_workspace, set_entitlement
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.db import bind
from poggio.storage.models import GrantUsage, OAuthGrant, User


class Stack:
    def __init__(self, instance, server, service, acme, user):
        self.instance, self.server, self.service, self.acme, self.user = instance, server, service, acme, user
        self.url = server.mcp_url

    def mint(self, packs=("accounts", "contacts", "revenue"), resource=None, workspace=None):
        return mint(self.service, workspace or self.acme, self.user, set(packs), resource or self.url)


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp(f"oauth-{request.param}"), request.param)
    db = inst.activate()
    registry = PackRegistry.load()
    port = __import__("instances").free_port()
    with db.connection_context():
        upgrade(registry)
        acme = demo.build(registry, "acme", accounts=20, seed=3).workspace
        user = User.get(User.email == demo.DEMO_ADMIN)
        service = OAuthService(known_packs=set(registry.names))
    server = ServerProcess(inst, port=port, extra_env={"POGGIO_PORTAL_PUBLIC_URL": "http://127.0.0.1:8123"})
    yield Stack(inst, server, service, acme, user)
    server.stop()
    drop_instance(inst)


@pytest.fixture(autouse=True)
def _bound(stack):
    db = bind(stack.instance.database_url)
    with db.connection_context():
        yield


def test_protected_resource_metadata(stack):
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        r = httpx.get(stack.server.url + path, headers={"Origin": "https://claude.ai"})
        meta = r.json()
        assert r.status_code == 200, path
        assert meta["resource"] == stack.url and meta["authorization_servers"] == ["http://127.0.0.1:8123"]
        assert meta["scopes_supported"] == [
            "accounts:read",
            "accounts:write",
            "contacts:read",
            "contacts:write",
            "revenue:read",
            "revenue:write",
        ]
        assert meta["bearer_methods_supported"] == ["header"]
        assert r.headers["access-control-allow-origin"] == "*"
    preflight = httpx.options(
        stack.server.url + "/.well-known/oauth-protected-resource/mcp",
        headers={"Origin": "https://claude.ai", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"


def _post(stack, token: str | None):
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(stack.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})


def test_challenge_names_the_resource_metadata(stack):
    metadata_url = f"{stack.server.url}/.well-known/oauth-protected-resource/mcp"
    missing = _post(stack, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f'Bearer realm="Poggio", resource_metadata="{metadata_url}"'
    # a presented but unknown token: the same pointer, and the error a person can act on (RFC 6750 §3.1)
    unknown = _post(stack, "pgoa_" + "A" * 33)
    challenge = unknown.headers["www-authenticate"]
    assert unknown.status_code == 401 and f'resource_metadata="{metadata_url}"' in challenge
    assert 'error="invalid_token"' in challenge or unknown.json()["reason"] == "malformed"


def test_access_token_works_like_an_api_token(stack):
    grant, tokens = stack.mint(packs=("accounts",))
    client = Mcp(stack.url, tokens["access_token"])
    assert sorted(client.tool_names()) == ["get_account", "search_accounts"]
    result = client.call("get_account", {"domain": "example.com"})
    assert not result.is_error and "Example Corp" in result.content[0].text
    # usage is counted against the connected app, and its last use recorded
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = list(GrantUsage.select().where(GrantUsage.grant == grant.id))
        used = OAuthGrant.get_by_id(grant.id)
        if {r.tool for r in rows} >= {"tools/list", "get_account"} and used.last_used_at is not None:
            break
        time.sleep(0.2)
    assert {r.tool for r in rows} >= {"tools/list", "get_account"}
    assert used.last_used_ip == "127.0.0.1" and used.last_used_client.startswith("poggio-tests")


def test_revoking_the_grant_holds_on_the_next_request(stack):
    grant, tokens = stack.mint()
    client = Mcp(stack.url, tokens["access_token"])
    assert client.tool_names()
    stack.service.revoke_grant(grant, Actor.cli())
    assert client.status_of_failure() == 401


def test_revoking_the_client_holds_on_the_next_request(stack):
    grant, tokens = stack.mint()
    client = Mcp(stack.url, tokens["access_token"])
    assert client.tool_names()
    stack.service.revoke_client(grant.client, Actor.cli())
    assert client.status_of_failure() == 401


def test_expired_access_token_is_refused(stack):
    from poggio.storage.db import utcnow
    from poggio.storage.models import OAuthToken

    grant, tokens = stack.mint()
    OAuthToken.update(access_expires_at=utcnow()).where(OAuthToken.grant == grant.id).execute()
    assert Mcp(stack.url, tokens["access_token"]).status_of_failure() == 401


def test_token_minted_for_another_resource_is_refused(stack):
    """RFC 8707: a token bound to another MCP server (here: the URL this server had before it moved)
    does not open this one."""
    _, tokens = stack.mint(resource="https://old-mcp.example.com/mcp")
    r = _post(stack, tokens["access_token"])
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    _, good = stack.mint(resource=normalise_resource(stack.url + "/"))
    assert _post(stack, good["access_token"]).status_code == 200


def test_workspace_isolation_and_entitlement(stack):
    cli = Actor.cli()
    other = create_workspace(f"globex-{time.monotonic_ns()}", "Globex", True, cli)
    user = create_user(f"admin{time.monotonic_ns()}@globex.example", "correct horse battery", other, "admin", cli)
    _, tokens = mint(stack.service, other, user, {"accounts"}, stack.url)
    client = Mcp(stack.url, tokens["access_token"])
    result = client.call("get_account", {"domain": "example.com"})
    assert result.is_error  # acme's example.com is not Globex's
    set_entitlement(other, False, cli)
    assert client.status_of_failure() == 403


def test_a_grant_ends_when_its_approver_is_no_longer_an_admin(stack):
    cli = Actor.cli()
    other = create_workspace(f"umbrella-{time.monotonic_ns()}", "Umbrella", True, cli)
    email = f"boss{time.monotonic_ns()}@umbrella.example"
    user = create_user(email, "correct horse battery", other, "admin", cli)
    _, tokens = mint(stack.service, other, user, {"accounts"}, stack.url)
    client = Mcp(stack.url, tokens["access_token"])
    assert client.tool_names()
    create_user(email, "correct horse battery", other, "member", cli)  # demoted
    assert client.status_of_failure() == 401


def test_apps_end_when_their_approver_is_deactivated_or_removed(stack):
    from poggio.identity.workspaces import deactivate_user, remove_user

    cli = Actor.cli()
    other = create_workspace(f"soylent-{time.monotonic_ns()}", "Soylent", True, cli)
    first = create_user(f"a{time.monotonic_ns()}@soylent.example", "correct horse battery", other, "admin", cli)
    second = create_user(f"b{time.monotonic_ns()}@soylent.example", "correct horse battery", other, "admin", cli)
    _, one = mint(stack.service, other, first, {"accounts"}, stack.url)
    _, two = mint(stack.service, other, second, {"accounts"}, stack.url)
    assert Mcp(stack.url, one["access_token"]).tool_names() and Mcp(stack.url, two["access_token"]).tool_names()
    deactivate_user(first, cli)
    remove_user(second, other, cli)
    assert Mcp(stack.url, one["access_token"]).status_of_failure() == 401
    assert Mcp(stack.url, two["access_token"]).status_of_failure() == 401
