"""One setting, POGGIO_TRUSTED_PROXIES, decides whose X-Forwarded-For both processes believe: by
default nobody's (not even loopback's), so a client cannot fake "last used from" or pick its sign-in
throttle bucket; behind a trusted proxy each user is seen with their own address."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from helpers import Mcp
from instances import PortalProcess, ServerProcess

from poggio.identity.sessions import SignInThrottle
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_user, create_workspace
from poggio.records.audit import Actor
from poggio.storage.db import database
from poggio.storage.models import ApiToken, AuditEvent

FAKE = "203.0.113.77"


@pytest.fixture
def acme(instance, monkeypatch):
    monkeypatch.setattr("poggio.identity.workspaces.BCRYPT_ROUNDS", 4)
    ws = create_workspace("acme", "Acme", True, Actor.cli())
    create_user("admin@acme.example", "correct horse battery", ws, "admin", Actor.cli())
    return ws


@pytest.mark.parametrize("trusted", ["", "127.0.0.0/8, 10.0.0.1"])
def test_the_mcp_server_believes_forwarded_for_only_from_a_trusted_proxy(instance, acme, trusted):
    token = TokenService().create(acme, "bot", Actor.cli()).plaintext
    server = ServerProcess(instance, extra_env={"POGGIO_TRUSTED_PROXIES": trusted})
    try:
        assert "get_account" in Mcp(server.mcp_url, token, headers={"X-Forwarded-For": FAKE}).tool_names()
        deadline = time.monotonic() + 10
        while ApiToken.get().last_used_ip is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    assert ApiToken.get().last_used_ip == (FAKE if trusted else "127.0.0.1")


def _sign_in(base: str, password: str, forwarded_for: str) -> int:
    with httpx.Client(base_url=base, timeout=30, headers={"X-Forwarded-For": forwarded_for}) as client:
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/sign-in").text).group(1)
        return client.post(
            "/sign-in", data={"csrf_token": csrf, "email": "admin@acme.example", "password": password}
        ).status_code


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_the_portal_believes_forwarded_for_only_from_a_trusted_proxy(instance, acme, trusted):
    portal = PortalProcess(instance, extra_env={"POGGIO_TRUSTED_PROXIES": trusted})
    try:
        # Behind a proxy, one user's failures must not make everyone else wait (one bucket per client).
        answers = [_sign_in(portal.url, "wrong password", f"198.51.100.{i}") for i in range(25)]
        other = _sign_in(portal.url, "correct horse battery", FAKE)
    finally:
        portal.stop()
    database.close()
    database.connect()
    ips = {e.ip for e in AuditEvent.select().where(AuditEvent.action.startswith("user.sign"))}
    buckets = {t.key for t in SignInThrottle.select()}
    if trusted:
        assert answers.count(401) == 25 and other == 302
        assert FAKE in ips and "198.51.100.3" in ips and "127.0.0.1" not in ips
        assert "client:198.51.100.3" in buckets
    else:
        assert answers.count(401) == 5 and other == 429  # one client: loopback, whatever it claims
        assert ips == {"127.0.0.1"} and all("198.51" not in k and FAKE not in k for k in buckets)


def test_a_bad_trusted_proxy_setting_is_a_clear_error(instance, monkeypatch):
    from poggio.settings import SettingsError, load_settings
    from portal import create_app

    monkeypatch.setenv("POGGIO_TRUSTED_PROXIES", "10.0.0.1, not-an-address")
    with pytest.raises(SettingsError) as err:
        create_app(load_settings())
    assert "POGGIO_TRUSTED_PROXIES" in str(err.value) and "not-an-address" in str(err.value)


def test_the_servers_argv_trusts_no_forwarded_header_by_default(instance):
    from poggio.commands.cli import _mcp_argv, _portal_argv
    from poggio.settings import load_settings

    plain = load_settings({})
    assert "--no-proxy-headers" in _mcp_argv(plain, None, None, 1)
    portal = _portal_argv(plain, None, None, 1)
    assert portal[portal.index("--forwarded-allow-ips") + 1] == ""
    behind = load_settings({"POGGIO_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.2"})
    assert "--no-proxy-headers" in _mcp_argv(behind, None, None, 1)  # the app applies the setting itself
