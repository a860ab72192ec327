"""Single sign-on end to end: a real OpenID provider (``oidc-provider`` under Node 22, its own login and
consent pages), a real portal (gunicorn), the person in Debian's Chromium. Set up with the contract
command ``poggio workspace sso``; the client secret read from the environment variable it names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import anyio
import httpx
import pytest
from instances import BACKENDS, PortalProcess, drop_instance, free_port, make_instance
from oauth_support import chromium
from sso_support import openid_provider, stop

from poggio.commands import demo
from poggio.identity.sessions import UserSession
from poggio.identity.sso import SsoIdentity
from poggio.identity.workspaces import create_user, create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.storage.models import AuditEvent, Membership, User, Workspace

pytestmark = pytest.mark.browser

SECRET = "poggio-sso-test-secret-0123456789"
ACCOUNTS = {
    "ada": {"email": "ada@acme.example", "name": "Ada Admin", "groups": ["poggio-admins", "poggio-users"]},
    "bob": {"email": "bob@acme.example", "name": "Bob Member", "groups": ["poggio-users"]},
    "eve": {"email": "eve@elsewhere.example", "name": "Eve", "groups": ["poggio-admins"]},
    "nog": {"email": "nog@acme.example", "name": "No Group", "groups": []},
}


class Stack:
    def __init__(self, tmp, backend):
        self.inst = make_instance(tmp / "instance", backend)
        self.db = self.inst.activate()
        with self.db.connection_context():
            upgrade(PackRegistry.load())
            built = demo.build(PackRegistry.load(), "acme", accounts=5)
        self.admin_email, self.admin_password = built.admin_email, built.admin_password
        self.portal_port = free_port()
        self.redirect_uri = f"http://127.0.0.1:{self.portal_port}/sign-in/oidc/callback"

    def poggio(self, *args, env=None):
        return subprocess.run(
            [sys.executable, "-m", "poggio", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                **self.inst.env,
                **(env or {}),
                "POGGIO_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{self.portal_port}",
            },
        )

    def audit(self, action):
        with self.db.connection_context():
            return [
                (e.actor_label, e.target, json.loads(e.detail or "{}"))
                for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)
            ]

    def role(self, email):
        with self.db.connection_context():
            m = (
                Membership.select()
                .join(User)
                .switch(Membership)
                .join(Workspace)
                .where((User.email == email) & (Workspace.slug == "acme"))
                .first()
            )
            return m.role if m else None


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"sso-{request.param}")
    s = Stack(tmp, request.param)
    clients = [
        {
            "client_id": "poggio",
            "client_secret": SECRET,
            "redirect_uris": [s.redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
    ]
    portal = None
    try:
        with openid_provider(tmp, clients, ACCOUNTS) as idp:
            s.idp = idp
            done = s.poggio(
                "workspace",
                "sso",
                "acme",
                "--issuer",
                idp.issuer,
                "--client-id",
                "poggio",
                "--client-secret-env",
                "POGGIO_TEST_SSO_SECRET",
                "--domain",
                "acme.example",
                "--admin-group",
                "poggio-admins",
                "--member-group",
                "poggio-users",
                "--scopes",
                "openid email profile groups",
            )
            assert done.returncode == 0, done.stderr
            assert s.redirect_uri in done.stdout
            portal = PortalProcess(
                s.inst,
                port=s.portal_port,
                extra_env={
                    "POGGIO_TEST_SSO_SECRET": SECRET,
                    "POGGIO_WRONG_SSO_SECRET": "not-the-secret",
                    "POGGIO_SSO_BREAK_GLASS": s.admin_email,
                },
            )
            s.portal = portal
            yield s
    finally:
        if portal is not None:
            portal.stop()
        s.db.close()
        drop_instance(s.inst)


async def _sso_sign_in(browser, stack, login: str, *, via_email: str | None = None, start: str | None = None):
    """The person signs in through the provider's own pages; returns (final URL, page text)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        if via_email:
            await page.goto(f"{stack.portal.url}/sign-in")
            await page.fill("#email", via_email)
            await page.click("button.sso")
            await page.click("ul.sso-choices a")
        else:
            await page.goto(start or f"{stack.portal.url}/sign-in/sso/acme")
        assert page.url.startswith(stack.idp.issuer), page.url
        await page.fill("input[name=login]", login)
        await page.fill("input[name=password]", "anything")
        await page.click("button[type=submit]")
        await page.wait_for_selector("button[type=submit]")
        if page.url.startswith(stack.idp.issuer):  # the provider's consent page
            await page.click("button[type=submit]")
        await page.wait_for_url(f"{stack.portal.url}/**", wait_until="load")
        await page.wait_for_load_state("load")
        return page.url, await page.inner_text("body")
    finally:
        await context.close()


def _run(fn, *args, **kwargs):
    async def go():
        async with chromium() as browser:
            return await fn(browser, *args, **kwargs)

    return anyio.run(go)


def test_sign_in_through_the_provider_creates_the_user_with_the_mapped_role(stack):
    url, text = _run(_sso_sign_in, stack, "ada", via_email="ada@acme.example")
    assert url.rstrip("/") == stack.portal.url, (url, text)
    assert "ada@acme.example" in text
    assert stack.role("ada@acme.example") == "admin"
    provisioned = stack.audit("user.provisioned")
    assert provisioned and provisioned[-1][1] == "ada@acme.example" and provisioned[-1][2]["role"] == "admin"
    signed = [e for e in stack.audit("user.signed_in") if e[2].get("method") == "sso"]
    assert signed and signed[-1][1] == "ada@acme.example"
    with stack.db.connection_context():
        assert SsoIdentity.select().join(User).where(User.email == "ada@acme.example").count() == 1


def test_a_member_by_the_group_claim_and_a_role_change_at_the_next_sign_in(stack):
    _run(_sso_sign_in, stack, "bob")
    assert stack.role("bob@acme.example") == "member"
    accounts = {**ACCOUNTS, "bob": {**ACCOUNTS["bob"], "groups": ["poggio-admins"]}}
    stack.idp.set_accounts(accounts)
    try:
        _run(_sso_sign_in, stack, "bob")
        assert stack.role("bob@acme.example") == "admin"
        stack.idp.set_accounts(ACCOUNTS)
        _run(_sso_sign_in, stack, "bob")
        assert stack.role("bob@acme.example") == "member"  # demoted: admin powers end
        changes = [e[2] for e in stack.audit("user.role_changed") if e[1] == "bob@acme.example"]
        assert [(c["before"], c["after"]) for c in changes][-2:] == [("member", "admin"), ("admin", "member")]
    finally:
        stack.idp.set_accounts(ACCOUNTS)


def test_refused_sign_ins_say_why_and_create_nothing(stack):
    url, text = _run(_sso_sign_in, stack, "eve")
    assert "elsewhere.example cannot sign in" in text
    url, text = _run(_sso_sign_in, stack, "nog")
    assert "does not give you access" in text
    with stack.db.connection_context():
        assert not User.select().where(User.email.in_(["eve@elsewhere.example", "nog@acme.example"])).exists()
    reasons = [e[2]["reason"] for e in stack.audit("sso.sign_in_failed")]
    assert any("domain" in r for r in reasons) and any("maps to a role" in r for r in reasons)


def test_require_sso_turns_passwords_off_but_not_for_break_glass(stack):
    _run(_sso_sign_in, stack, "ada")  # an admin has signed in through the provider: it may be required
    done = stack.poggio("workspace", "sso", "acme", "--issuer", stack.idp.issuer, "--client-id", "poggio", "--require")
    assert done.returncode == 0, done.stderr
    try:
        with stack.db.connection_context():
            create_user("pat@acme.example", "a-long-password-1", Workspace.get(slug="acme"), "member", Actor.cli())
        with httpx.Client(base_url=stack.portal.url) as http:
            form = http.get("/sign-in").text
            csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
            refused = http.post(
                "/sign-in", data={"csrf_token": csrf, "email": "pat@acme.example", "password": "a-long-password-1"}
            )
            assert refused.status_code == 403 and "requires single sign-on" in refused.text
        with httpx.Client(base_url=stack.portal.url) as http:
            form = http.get("/sign-in").text
            csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
            allowed = http.post(
                "/sign-in", data={"csrf_token": csrf, "email": stack.admin_email, "password": stack.admin_password}
            )
            assert allowed.status_code == 302, allowed.text[:500]
    finally:
        stack.poggio("workspace", "sso", "acme", "--issuer", stack.idp.issuer, "--client-id", "poggio", "--no-require")


def test_a_missing_or_wrong_client_secret(stack):
    with stack.db.connection_context():
        sessions_before = UserSession.select().count()
    stack.poggio(
        "workspace",
        "sso",
        "acme",
        "--issuer",
        stack.idp.issuer,
        "--client-id",
        "poggio",
        "--client-secret-env",
        "POGGIO_MISSING_SECRET",
    )
    try:
        _, text = _run(_start_only, stack)
        assert "POGGIO_MISSING_SECRET" in text  # the portal lacks that variable: said before leaving for the provider
        stack.poggio(
            "workspace",
            "sso",
            "acme",
            "--issuer",
            stack.idp.issuer,
            "--client-id",
            "poggio",
            "--client-secret-env",
            "POGGIO_WRONG_SSO_SECRET",
        )
        url, text = _run(_sso_sign_in, stack, "ada")  # through the provider's pages; the code exchange fails
        assert "/sign-in/oidc/callback" in url and "refused Poggio's client credentials" in text
    finally:
        stack.poggio(
            "workspace",
            "sso",
            "acme",
            "--issuer",
            stack.idp.issuer,
            "--client-id",
            "poggio",
            "--client-secret-env",
            "POGGIO_TEST_SSO_SECRET",
        )
    with stack.db.connection_context():
        assert UserSession.select().count() == sessions_before
    reasons = [e[2]["reason"] for e in stack.audit("sso.sign_in_failed")]
    assert "client secret variable POGGIO_MISSING_SECRET not set" in reasons
    assert "token endpoint: invalid_client" in reasons


async def _start_only(browser, stack):
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{stack.portal.url}/sign-in/sso/acme")
        return page.url, await page.inner_text("body")
    finally:
        await context.close()


def test_unknown_workspace_and_provider_down(stack, tmp_path):
    with httpx.Client(base_url=stack.portal.url) as http:
        missing = http.get("/sign-in/sso/nope")
        assert missing.status_code == 404 and "No single sign-on is set up" in missing.text
    # a provider that is down: a second provider started and stopped, configured for another workspace
    with openid_provider(tmp_path, [], {}) as other:
        issuer = other.issuer
        with stack.db.connection_context():
            create_workspace("beta", "Beta", False, Actor.cli())
        done = stack.poggio(
            "workspace",
            "sso",
            "beta",
            "--issuer",
            issuer,
            "--client-id",
            "x",
            "--client-secret-env",
            "POGGIO_TEST_SSO_SECRET",
        )
        assert done.returncode == 0, done.stderr
        stop(other)
        with httpx.Client(base_url=stack.portal.url) as http:
            down = http.get("/sign-in/sso/beta")
            assert down.status_code == 502 and "cannot be reached" in down.text
    assert any(e[1] == issuer and "unreachable" in e[2]["reason"] for e in stack.audit("sso.sign_in_failed"))
