"""The MCP server's cache of verified credentials (mcp_server.auth.VerifiedCache) never outlives a
change: any commit, by any connection, empties it, and a credential's expiry is checked at each use."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

import mcp_server.auth as auth
from mcp_server.auth import VerifiedCache
from poggio.identity.tokens import TokenRejected, TokenService
from poggio.identity.workspaces import create_workspace, set_entitlement
from poggio.records.audit import Actor
from poggio.storage.db import CommitWatcher, database, utcnow

CLI = Actor.cli()


class Cache(VerifiedCache):
    """The cache as the server's authentication uses it (mcp_server.auth.TokenAuthBackend): look the
    token up, else verify it and keep the verdict (a refusal raises and is not kept)."""

    def get(self, presented, verify):
        verified = self.lookup(presented)
        if verified is None:
            verified = verify(presented)
            self.keep(presented, verified)
        return verified


@pytest.fixture
def setup(instance):
    ws = create_workspace("acme", "Acme", True, CLI)
    service = TokenService(known_packs={"accounts", "contacts", "revenue"})
    watcher = CommitWatcher.of(database.obj)
    assert watcher is not None
    calls = []

    def verify(presented):
        calls.append(presented)
        return service.verify(presented)

    yield ws, service, Cache(watcher), verify, calls
    watcher.close()


def test_a_verdict_is_kept_until_anything_is_committed(setup, instance):
    ws, service, cache, verify, calls = setup
    issued = service.create(ws, "agent", CLI)
    assert cache.get(issued.plaintext, verify).token_id == issued.token.id
    assert cache.get(issued.plaintext, verify).token_id == issued.token.id
    assert len(calls) == 1  # the second use came from the cache
    # a commit by another connection (another process: the portal, the CLI) that has nothing to do
    # with the token still empties the cache
    other = sqlite3.connect(instance.database_url.split("///", 1)[1])
    other.execute("CREATE TABLE unrelated (x)")
    other.commit()
    other.close()
    cache.get(issued.plaintext, verify)
    assert len(calls) == 2


def test_revocation_and_entitlement_take_effect_on_the_next_use(setup):
    ws, service, cache, verify, calls = setup
    issued = service.create(ws, "agent", CLI)
    cache.get(issued.plaintext, verify)
    service.revoke(issued.token, CLI)  # this process's own database connection: not the watcher's
    with pytest.raises(TokenRejected):
        cache.get(issued.plaintext, verify)
    second = service.create(ws, "second", CLI)
    cache.get(second.plaintext, verify)
    set_entitlement(ws, False, CLI)
    with pytest.raises(TokenRejected) as refused:
        cache.get(second.plaintext, verify)
    assert refused.value.reason == "not_entitled"


def test_expiry_is_checked_at_each_use(setup, monkeypatch):
    ws, service, cache, verify, calls = setup
    issued = service.create(ws, "short", CLI, expires="1d")
    cache.get(issued.plaintext, verify)
    cache.get(issued.plaintext, verify)
    assert len(calls) == 1
    later = utcnow() + dt.timedelta(days=1, seconds=1)
    soon = auth.monotonic() + dt.timedelta(days=1, seconds=1).total_seconds()
    monkeypatch.setattr(auth, "monotonic", lambda: soon)
    monkeypatch.setattr(service, "verify", lambda presented: TokenService.verify(service, presented, now=later))
    with pytest.raises(TokenRejected):
        cache.get(issued.plaintext, verify)
    assert len(calls) == 2


def test_refusals_are_not_kept_and_the_token_is_not_the_key(setup):
    ws, service, cache, verify, calls = setup
    issued = service.create(ws, "agent", CLI)
    for _ in range(2):
        with pytest.raises(TokenRejected):
            cache.get(issued.plaintext[:-1] + ("A" if issued.plaintext[-1] != "A" else "B"), verify)
    assert len(calls) == 2
    cache.get(issued.plaintext, verify)
    assert issued.plaintext not in repr(cache.__dict__)


def test_no_watcher_for_postgres_or_memory():
    from peewee import SqliteDatabase

    assert CommitWatcher.of(SqliteDatabase(":memory:")) is None
