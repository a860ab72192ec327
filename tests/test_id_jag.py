"""Enterprise-Managed Authorization end to end: the MCP SDK's own ``IdentityAssertionOAuthProvider``
(SEP-990) with a client an admin provisioned (``poggio oauth client create --grant jwt-bearer``),
ID-JAGs from a workspace's trusted identity provider (tests/id_jag_support.py: token exchange over
real HTTP, keys by discovery), a real portal and a real MCP server process. No consent page; the app
listed as managed by the identity provider; what it may do follows the employee's role; refused
assertions get ``invalid_grant`` with a reason and an audit line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import anyio
import httpx
import httpx2
import pytest
from id_jag_support import ID_JAG_TYPE, TOKEN_EXCHANGE, IdJagProvider
from instances import BACKENDS
from mcp import Client
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from oauth_support import oauth_stack

from poggio.identity import sso
from poggio.identity.id_jag import ManagedGrant
from poggio.identity.oauth import OAuthService
from poggio.identity.workspaces import create_user
from poggio.records.audit import Actor
from poggio.storage.db import database
from poggio.storage.models import AuditEvent, OAuthGrant, Workspace

WRITE_TOOLS = {"create_account", "update_account", "add_note"}


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    idp = IdJagProvider()
    try:
        with oauth_stack(tmp_path_factory.mktemp(f"id-jag-{request.param}"), request.param) as s:
            with database.connection_context():
                ws = Workspace.get(slug="acme")
                sso.configure(
                    ws,
                    Actor.cli(),
                    issuer=idp.issuer,
                    client_id="poggio",
                    client_secret="unused-here",
                    secret_key=s.instance.env["POGGIO_SECRET_KEY"],
                    id_jag=True,
                )
                create_user("bob@acme.example", "a-long-password-1", ws, "member", Actor.cli())
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "poggio",
                    "oauth",
                    "client",
                    "create",
                    "--workspace",
                    "acme",
                    "--name",
                    "Acme agent",
                    "--packs",
                    "accounts:write,contacts",
                    "--grant",
                    "jwt-bearer",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={
                    **os.environ,
                    **s.instance.env,
                    "POGGIO_MCP_PUBLIC_URL": s.mcp_url,
                    "POGGIO_PORTAL_PUBLIC_URL": s.portal.url,
                },
            )
            assert done.returncode == 0, done.stderr
            s.client_id = re.search(r"client_id=(\S+)", done.stdout).group(1)
            s.client_secret = re.search(r"client_secret=(\S+)", done.stdout).group(1)
            s.idp = idp
            yield s
    finally:
        idp.close()


class Memory:
    def __init__(self):
        self.tokens = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return None

    async def set_client_info(self, info):
        pass


def _fetcher(stack, sub, email):
    """The app's leg 1: sign the employee in at the identity provider, exchange the ID token for an ID-JAG."""

    async def fetch(audience: str, resource: str) -> str:
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{stack.idp.issuer}/token",
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "requested_token_type": ID_JAG_TYPE,
                    "audience": audience,
                    "resource": resource,
                    "client_id": stack.client_id,
                    "subject_token": stack.idp.login(sub, email),
                    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                },
            )
        answer.raise_for_status()
        return answer.json()["access_token"]

    return fetch


async def _session(stack, sub, email, method="client_secret_post"):
    provider = IdentityAssertionOAuthProvider(
        server_url=stack.mcp_url,
        storage=Memory(),
        client_id=stack.client_id,
        client_secret=stack.client_secret,
        issuer=stack.portal.url,
        assertion_provider=_fetcher(stack, sub, email),
        token_endpoint_auth_method=method,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(stack.mcp_url, http_client=http)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            found = await client.call_tool("search_accounts", {"query": "a", "limit": 2})
            return tools, found


def test_metadata_advertises_the_grant_and_its_profile(stack):
    meta = stack.oauth_metadata()
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in meta["grant_types_supported"]
    assert meta["authorization_grant_profiles_supported"] == ["urn:ietf:params:oauth:grant-profile:id-jag"]


def test_the_sdk_provider_connects_an_admin_and_a_member_without_consent(stack):
    tools, found = anyio.run(_session, stack, "ada-at-idp", stack.email)
    assert not found.is_error and WRITE_TOOLS & tools  # an admin: the client's packs as provisioned
    assert not {"get_revenue_summary"} & tools  # revenue is not among the client's packs
    tools, found = anyio.run(_session, stack, "bob-at-idp", "bob@acme.example", "client_secret_basic")
    assert not found.is_error and not WRITE_TOOLS & tools and "search_contacts" in tools  # a member: read only
    with database.connection_context():
        managed = {m.user.email: m for m in ManagedGrant.select()}
        assert set(managed) == {stack.email, "bob@acme.example"}
        grants = {e: OAuthGrant.get_by_id(m.grant_id) for e, m in managed.items()}
        assert grants[stack.email].packs == "accounts:write,contacts"
        assert grants["bob@acme.example"].packs == "accounts,contacts"
        accepted = AuditEvent.select().where(AuditEvent.action == "oauth.id_jag_accepted").count()
        assert accepted == 2
    # Connected apps lists them as managed by the identity provider
    with httpx.Client(base_url=stack.portal.url, timeout=20) as http:
        form = http.get("/sign-in").text
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
        assert (
            http.post(
                "/sign-in", data={"csrf_token": csrf, "email": stack.email, "password": stack.password}
            ).status_code
            == 302
        )
        page = http.get("/settings/mcp/").text
    assert page.count("managed by your identity provider") >= 2 and "bob@acme.example" in page


def test_a_revoked_managed_app_is_refused_on_the_next_request(stack):
    provider_tokens = Memory()
    provider = IdentityAssertionOAuthProvider(
        server_url=stack.mcp_url,
        storage=provider_tokens,
        client_id=stack.client_id,
        client_secret=stack.client_secret,
        issuer=stack.portal.url,
        assertion_provider=_fetcher(stack, "ada-at-idp", stack.email),
    )

    async def first():
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with Client(streamable_http_client(stack.mcp_url, http_client=http)) as client:
                await client.list_tools()

    anyio.run(first)
    access = provider_tokens.tokens.access_token
    with database.connection_context():
        grant = OAuthGrant.get_by_id(
            ManagedGrant.get(ManagedGrant.user == ManagedGrant.user.rel_model.get(email=stack.email).id).grant_id
        )
        OAuthService().revoke_grant(grant, Actor.cli(), "revoked in a test")
    answer = httpx.post(
        stack.mcp_url,
        headers={
            "Authorization": f"Bearer {access}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        },
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert answer.status_code == 401


def _token(stack, assertion, **extra):
    return httpx.post(
        f"{stack.portal.url}/oauth/token",
        auth=(stack.client_id, stack.client_secret),
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion, **extra},
        timeout=20,
    )


def _good(stack, **changes):
    claims = {
        "sub": "ada-at-idp",
        "email": stack.email,
        "aud": stack.portal.url,
        "resource": stack.mcp_url,
        "client_id": stack.client_id,
        **changes,
    }
    return stack.idp.mint(**claims)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"aud": "https://another-as.example"}, "another authorization server"),
        ({"resource": "https://other.example/mcp"}, "another resource"),
        ({"client_id": "pgc_someone_else"}, "another client"),
        ({"exp": 1_000_000}, "expired"),
        ({"exp": 4_000_000_000}, "too long"),
        ({"jti": None}, "jti"),
        ({"typ": "JWT"}, "not an ID-JAG"),
        ({"sub": "nobody", "email": "nobody@elsewhere.example"}, "not an active user"),
        ({"iss": "https://untrusted.example"}, "not trusted"),
    ],
)
def test_refused_assertions_say_why_and_are_on_record(stack, changes, says):
    answer = _token(stack, _good(stack, **changes))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant" and says in answer.json()["error_description"]
    with database.connection_context():
        last = (
            AuditEvent.select()
            .where(AuditEvent.action == "oauth.id_jag_refused")
            .order_by(AuditEvent.id.desc())
            .first()
        )
        assert says in json.loads(last.detail)["reason"]


def test_a_replayed_assertion_and_a_forged_one(stack):
    assertion = _good(stack)
    assert _token(stack, assertion).status_code == 200
    again = _token(stack, assertion)
    assert again.status_code == 400 and "used before" in again.json()["error_description"]
    other = IdJagProvider()  # same issuer URL shape, another key: the signature fails
    try:
        forged = other.sign(
            {
                **json.loads(__import__("base64").urlsafe_b64decode(assertion.split(".")[1] + "==")),
                "jti": "forged-1",
                "iss": stack.idp.issuer,
            },
            typ="oauth-id-jag+jwt",
        )
    finally:
        other.close()
    refused = _token(stack, forged)
    assert refused.status_code == 400 and "signature does not verify" in refused.json()["error_description"]
    wrong_secret = httpx.post(
        f"{stack.portal.url}/oauth/token",
        auth=(stack.client_id, "pgos_wrong"),
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": _good(stack)},
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
