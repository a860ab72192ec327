"""The token service, usage recording and log redaction, against a real (temp SQLite) database."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest

from poggio.errors import InvalidInput
from poggio.identity import tokens
from poggio.identity.tokens import TokenRejected, TokenService
from poggio.identity.workspaces import create_workspace, set_entitlement
from poggio.records.audit import Actor
from poggio.records.redaction import TokenRedactingFilter, redact
from poggio.records.usage import UsageRecorder
from poggio.security import token_format
from poggio.storage.db import database, utcnow
from poggio.storage.models import ApiToken, AuditEvent, TokenUsage

CLI = Actor.cli()


@pytest.fixture
def ws(instance):
    return create_workspace("acme", "Acme", True, CLI)


@pytest.fixture
def service():
    return TokenService(known_packs={"accounts", "contacts", "revenue"}, max_active_tokens=5)


def test_format_entropy_and_checksum():
    issued = {token_format.generate() for _ in range(200)}
    assert len(issued) == 200
    for t in issued:
        assert re.fullmatch(r"pgo_[A-Za-z0-9]{33}", t) and token_format.TOKEN_PATTERN.fullmatch(t)
        assert token_format.well_formed(t)
    t = next(iter(issued))
    flipped = t[:10] + ("a" if t[10] != "a" else "b") + t[11:]
    assert not token_format.well_formed(flipped)
    assert not token_format.well_formed(t + "x") and not token_format.well_formed("ghp_" + t[4:])
    assert token_format.BODY_LENGTH * 5.954 >= 160  # log2(62) bits per character


def test_only_the_digest_is_stored(ws, service):
    issued = service.create(ws, "Slack agent", CLI)
    raw = database.execute_sql("SELECT * FROM api_token").fetchall()
    assert issued.plaintext not in repr(raw)
    row = ApiToken.get_by_id(issued.token.id)
    assert row.digest == token_format.digest(issued.plaintext) and row.last_four == issued.plaintext[-4:]
    peppered = TokenService(pepper="pepper")
    assert token_format.digest(issued.plaintext, "pepper") != row.digest
    with pytest.raises(TokenRejected):
        peppered.verify(issued.plaintext)  # a different pepper: a different digest


def test_verify_reasons(ws, service):
    issued = service.create(ws, "a", CLI, packs="accounts,contacts")
    verified = service.verify(issued.plaintext)
    assert verified.workspace_id == ws.id and verified.packs == frozenset({"accounts", "contacts"})
    for presented, reason in (
        (None, "missing"),
        ("", "missing"),
        ("pgo_short", "malformed"),
        (token_format.generate(), "invalid"),
    ):
        with pytest.raises(TokenRejected) as err:
            service.verify(presented)
        assert err.value.reason == reason
    set_entitlement(ws, False, CLI)
    with pytest.raises(TokenRejected) as err:
        service.verify(issued.plaintext)
    assert err.value.reason == "not_entitled"


def test_expiry_and_revocation(ws, service):
    issued = service.create(ws, "short", CLI, expires="1d")
    assert service.verify(issued.plaintext)
    later = utcnow() + dt.timedelta(days=1, seconds=1)
    with pytest.raises(TokenRejected) as err:
        service.verify(issued.plaintext, now=later)
    assert err.value.reason == "invalid"
    service.revoke(issued.token, CLI)
    with pytest.raises(TokenRejected):
        service.verify(issued.plaintext)
    assert tokens.status(ApiToken.get_by_id(issued.token.id)) == "revoked"


def test_parse_expiry():
    now = dt.datetime(2026, 11, 24, 12, 0)
    assert tokens.parse_expiry("30d", now) == now + dt.timedelta(days=30)
    assert tokens.parse_expiry("7", now) == now + dt.timedelta(days=7)
    assert tokens.parse_expiry("never", now) is None
    assert tokens.parse_expiry("2026-12-31", now) == dt.datetime(2027, 1, 1)
    for bad in ("2020-01-01", "0d", "99999d", "soon", "2026-11-23"):
        with pytest.raises(InvalidInput) as err:
            tokens.parse_expiry(bad, now)
        assert err.value.field == "expires"


def test_names_unique_among_active_tokens_and_validated(ws, service):
    first = service.create(ws, "RevOps Control Panel", CLI)
    with pytest.raises(InvalidInput) as err:
        service.create(ws, "revops  control panel", CLI)
    assert err.value.field == "name"
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(InvalidInput):
            service.create(ws, bad, CLI)
    service.revoke(first.token, CLI)
    service.create(ws, "RevOps Control Panel", CLI)  # a revoked token frees its name
    with pytest.raises(InvalidInput):
        service.create(ws, "RevOps Control Panel", CLI)
    with pytest.raises(InvalidInput) as err:
        service.create(ws, "packs", CLI, packs="accounts,weather")
    assert "weather" in err.value.message


def test_rename_expiry_rotate_leave_audit_events(ws, service):
    issued = service.create(ws, "Slack", CLI)
    other = service.create(ws, "Other", CLI)
    with pytest.raises(InvalidInput):
        service.rename(issued.token, "other", CLI)
    service.rename(issued.token, "ACME Slack agent", CLI)
    service.set_expiry(issued.token, "never", CLI)
    assert ApiToken.get_by_id(issued.token.id).expires_at is None
    rotated = service.rotate(issued.token, CLI)
    assert rotated.plaintext != issued.plaintext
    with pytest.raises(TokenRejected):
        service.verify(issued.plaintext)
    assert service.verify(rotated.plaintext).token_id == issued.token.id
    actions = [e.action for e in AuditEvent.select().where(AuditEvent.workspace == ws).order_by(AuditEvent.id)]
    assert actions[-3:] == ["token.renamed", "token.expiry_changed", "token.rotated"]
    details = " ".join(e.detail for e in AuditEvent.select())
    for secret in (issued.plaintext, rotated.plaintext, other.plaintext):
        assert secret not in details and secret[4:-4] not in details


def test_cap_on_active_tokens(ws, service):
    for i in range(5):
        service.create(ws, f"t{i}", CLI)
    with pytest.raises(InvalidInput) as err:
        service.create(ws, "one too many", CLI)
    assert "limit" in err.value.message


def test_usage_recorder_batches_and_adds_up(ws, service):
    issued = service.create(ws, "counted", CLI)
    recorder = UsageRecorder(interval=3600)
    for i in range(250):
        recorder.record(issued.token.id, "search_accounts", ok=i % 50 != 0, ip="10.0.0.1", client="agent 1.0")
    recorder.record(issued.token.id, "get_account")
    assert TokenUsage.select().count() == 0  # nothing written per call
    assert recorder.flush() == 251
    recorder.record(issued.token.id, "search_accounts")
    recorder.close()  # a clean shutdown flushes the rest
    rows = {u.tool: (u.calls, u.errors) for u in TokenUsage.select()}
    assert rows == {"search_accounts": (251, 5), "get_account": (1, 0)}
    token = ApiToken.get_by_id(issued.token.id)
    assert token.last_used_ip == "10.0.0.1" and token.last_used_client == "agent 1.0"


def test_a_failed_flush_keeps_the_activity_rows_for_the_next(ws, service, monkeypatch):
    """A flush that fails after writing the activity rows (its transaction rolled back) keeps those
    rows, not the counters it was about to write in their place, and the next flush writes them."""
    from poggio.storage.models import Activity

    issued = service.create(ws, "counted", CLI)
    recorder = UsageRecorder(interval=3600)
    for _ in range(3):
        recorder.record(issued.token.id, "get_account", ip="10.0.0.1", workspace_id=ws.id, outcome="ok")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(TokenUsage, "insert_many", broken)
        assert recorder.flush() == 0
    assert Activity.select().count() == 0 and TokenUsage.select().count() == 0
    assert recorder.flush() == 3
    assert Activity.select().count() == 3
    assert [(u.tool, u.calls) for u in TokenUsage.select()] == [("get_account", 3)]


def test_a_failing_prune_chore_leaves_the_others_to_run(ws, caplog):
    """The flush thread's hourly prune runs each chore on its own: one that fails is logged (and
    tried again an hour later), the others still run, the activity prune first."""
    ran = []

    def broken():
        raise RuntimeError("database is locked")

    recorder = UsageRecorder(
        interval=3600, retention_days=1, chores=[("broken rows", broken), ("other rows", lambda: ran.append(1) or 4)]
    )
    assert recorder.prune() == 4 and ran == [1] and recorder.pruned == 4
    assert "pruning broken rows failed" in caplog.text


def test_redaction_masks_tokens_in_messages_and_tracebacks(caplog):
    secret = token_format.generate()
    assert secret not in redact(f"Authorization: Bearer {secret}")
    log = logging.getLogger("poggio.test")
    handler = logging.StreamHandler()
    handler.addFilter(TokenRedactingFilter())
    records = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        log.warning("got %s", secret)
        try:
            raise ValueError(f"bad token {secret}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert records and all(secret not in r for r in records)
    assert f"pgo_…{secret[-4:]}" in records[0]


def _expire(token):
    """Move ``token`` 31 days into the past: its 30 days ran out a day ago."""
    ApiToken.update(
        created_at=token.created_at - dt.timedelta(days=31), expires_at=token.expires_at - dt.timedelta(days=31)
    ).where(ApiToken.id == token.id).execute()
    return ApiToken.get_by_id(token.id)


def test_an_expired_tokens_expiry_cannot_be_edited_back_to_life(ws, service):
    issued = service.create(ws, "Old", CLI, expires="30d")
    token = _expire(issued.token)
    for value in ("30d", "never", (utcnow() + dt.timedelta(days=3)).date().isoformat()):
        with pytest.raises(InvalidInput) as err:
            service.set_expiry(token, value, CLI)
        assert err.value.field == "expires" and "expired" in err.value.message and "rotate" in err.value.message.lower()
    with pytest.raises(TokenRejected):
        service.verify(issued.plaintext)
    assert ApiToken.get_by_id(token.id).expires_at < utcnow()


def test_rotating_an_expired_token_gives_a_new_secret_with_a_fresh_expiry(ws, service):
    issued = service.create(ws, "Old", CLI, expires="30d")
    token = _expire(issued.token)
    rotated = service.rotate(token, CLI)
    assert rotated.plaintext != issued.plaintext
    assert service.verify(rotated.plaintext).token_id == token.id
    with pytest.raises(TokenRejected):
        service.verify(issued.plaintext)
    fresh = ApiToken.get_by_id(token.id).expires_at
    assert utcnow() + dt.timedelta(days=29) < fresh <= utcnow() + dt.timedelta(days=30, seconds=5)
    revoked = service.create(ws, "Gone", CLI)
    service.revoke(revoked.token, CLI)
    with pytest.raises(InvalidInput):
        service.rotate(ApiToken.get_by_id(revoked.token.id), CLI)
