"""Webhooks: a workspace's endpoints and the outbox of messages for them.

An admin adds an endpoint (a URL, the events it wants); it gets a signing secret (``whsec_…``, shown
once) with which every delivery is signed as the Standard Webhooks specification says. A change that
causes an event writes the event's message into the outbox (``webhook_message``) in its own
transaction, one row per endpoint that wants it: committed with the change or not at all. The running
servers deliver the outbox (:mod:`poggio.webhook_delivery`). A payload holds the workspace's slug and
what the audit log says of the change: ids, names, who; never a secret, never another workspace's data.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from peewee import CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from poggio import sealing
from poggio.addresses import AddressRefused, resolve_checked
from poggio.db import BaseModel, database, utcnow, writing
from poggio.errors import PoggioError
from poggio.models import User, Workspace

# event types an endpoint may choose, with what a person reads for each
EVENTS = {
    "token.created": "Token created",
    "token.rotated": "Token rotated",
    "token.revoked": "Token revoked",
    "token.expiring": "Token expiring within 7 days",
    "app.connected": "App connected",
    "app.disconnected": "App disconnected",
    "app.requested": "App requested by a member",
    "app.approved": "App request approved",
    "app.denied": "App denied",
    "policy.changed": "Workspace policy changed",
    "usage.unusual": "Unusual use of a token or app",
    "tool.write": "Every write tool call",
    "webhook.test": "Test event (the Send test event button)",
}
# what an endpoint gets when it names no events: everything but every write tool call (the busy one)
DEFAULT_EVENTS = tuple(e for e in EVENTS if e not in ("tool.write", "webhook.test"))

# the audit log's actions that are webhook events (the one place a new event is wired in)
FROM_AUDIT = {
    "token.created": "token.created",
    "token.rotated": "token.rotated",
    "token.revoked": "token.revoked",
    "oauth.approved": "app.connected",
    "oauth.client_created": "app.connected",  # a machine client: connected by the admin who created it
    "oauth.client_revoked": "app.disconnected",
    "oauth.grant_revoked": "app.disconnected",
    "oauth.refresh_reused": "app.disconnected",
    "oauth.denied": "app.denied",
    "oauth.requested": "app.requested",  # a member asked (poggio.app_access)
    "oauth.request_approved": "app.approved",
    "oauth.request_denied": "app.denied",
    "workspace.policy_changed": "policy.changed",
    "workspace.app_policy_changed": "policy.changed",
    "oauth.id_jag_accepted": "app.connected",  # connected by the identity provider
    "data.written": "tool.write",
}
# detail keys never sent, whatever an audit event holds
NEVER_SENT = {"secret", "token", "password", "client_secret", "code", "refresh_token"}


class WebhookError(PoggioError, ValueError):
    """An endpoint cannot be added as asked; the message says why, for a person."""


class WebhookEndpoint(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    url = CharField(max_length=2000)
    # the signing secret, sealed (poggio.sealing): read back to sign each delivery; shown once, when added
    secret = TextField()
    events = TextField()  # ",token.created,app.connected," (commas around each, for one LIKE)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=utcnow)
    paused_at = DateTimeField(null=True)  # no more messages until an admin resumes it
    failing_since = DateTimeField(null=True)  # the first failed attempt since the last delivered one

    @property
    def event_list(self) -> list[str]:
        return [e for e in self.events.split(",") if e]


class WebhookMessage(BaseModel):
    """One event for one endpoint: the outbox row, until delivered or given up."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
    endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="+", index=False)
    msg_id = CharField(max_length=40)  # the webhook-id header: one per event, the same for every endpoint
    event_type = CharField(max_length=40)
    data = TextField()  # JSON
    dedupe = CharField(max_length=120, null=True)  # one message per endpoint and key (e.g. one expiry notice)
    created_at = DateTimeField(default=utcnow)
    status = CharField(max_length=12, default="pending")  # pending, delivered, failed
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    last_status = IntegerField(null=True)
    last_error = CharField(max_length=300, null=True)

    class Meta:
        indexes = (
            (("status", "next_attempt_at"), False),
            (("endpoint", "created_at"), False),
            (("endpoint", "dedupe"), True),
        )


class WebhookAttempt(BaseModel):
    """One try at delivering a message: the delivery log of an endpoint."""

    message = ForeignKeyField(WebhookMessage, on_delete="CASCADE", backref="+")
    endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="+", index=False)
    at = DateTimeField(default=utcnow)
    status_code = IntegerField(null=True)
    error = CharField(max_length=300, null=True)
    duration_ms = FloatField(default=0)

    class Meta:
        indexes = ((("endpoint", "at"), False),)


@dataclass(frozen=True)
class AddedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_private: bool) -> str:
    """``url`` if Poggio may post to it: https (http only to a loopback host), no credentials or
    fragment, a host whose every address is public (unless ``allow_private``); :class:`WebhookError`."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError("the endpoint URL is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookError("the endpoint URL must be an https:// URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise WebhookError("the endpoint URL must use https (plain http only to a loopback address)")
    if parts.username or parts.password or parts.fragment:
        raise WebhookError("the endpoint URL must not carry credentials or a fragment")
    if len(url) > 2000:
        raise WebhookError("the endpoint URL is longer than 2000 characters")
    try:
        resolve_checked(
            parts.hostname,
            port or (443 if parts.scheme == "https" else 80),
            allow_private,
            what="the endpoint URL",
            fetched="webhooks",
        )
    except AddressRefused as exc:
        raise WebhookError(str(exc)) from None
    return url


def parse_events(events) -> list[str]:
    """Event types from a list or a comma-separated string; :data:`DEFAULT_EVENTS` when none."""
    if isinstance(events, str):
        events = [e.strip() for e in events.split(",")]
    chosen = [e for e in (events or []) if e]
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise WebhookError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return list(dict.fromkeys(chosen)) or list(DEFAULT_EVENTS)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SEALED_FOR = b"poggio webhook signing secret"  # the sealing purpose of an endpoint's secret


def signing_secret(endpoint: WebhookEndpoint, secret_key: str) -> str:
    """The endpoint's ``whsec_…`` secret, unsealed; :class:`poggio.sealing.Unsealable` when it was sealed
    under another ``POGGIO_SECRET_KEY``."""
    return sealing.unseal(endpoint.secret, secret_key, SEALED_FOR)


def add_endpoint(
    workspace: Workspace, url: str, events=None, actor=None, allow_private: bool = False, *, secret_key: str
) -> AddedEndpoint:
    """Add an endpoint; its signing secret is returned (to be shown once) and stored sealed under
    ``secret_key`` (the installation's ``POGGIO_SECRET_KEY``)."""
    url = check_url(url, allow_private)
    chosen = parse_events(events)
    secret = new_secret()
    from poggio import audit

    actor = actor or audit.Actor(label="system")
    with writing():
        endpoint = WebhookEndpoint.create(
            workspace=workspace,
            url=url,
            secret=sealing.seal(secret, secret_key, SEALED_FOR),
            events="," + ",".join(chosen) + ",",
            created_by=actor.user,
        )
        audit.record("webhook.added", actor, workspace, target=url[:254], endpoint_id=endpoint.id, events=chosen)
    return AddedEndpoint(endpoint, secret)


def endpoints(workspace: Workspace | int) -> list[WebhookEndpoint]:
    wid = workspace if isinstance(workspace, int) else workspace.id
    return list(WebhookEndpoint.select().where(WebhookEndpoint.workspace == wid).order_by(WebhookEndpoint.id))


def get_endpoint(workspace: Workspace | int, endpoint_id: int) -> WebhookEndpoint | None:
    wid = workspace if isinstance(workspace, int) else workspace.id
    return WebhookEndpoint.get_or_none((WebhookEndpoint.id == endpoint_id) & (WebhookEndpoint.workspace == wid))


def remove_endpoint(workspace: Workspace | int, endpoint_id: int, actor=None) -> bool:
    from poggio import audit

    wid = workspace if isinstance(workspace, int) else workspace.id
    with writing():
        endpoint = get_endpoint(wid, endpoint_id)
        if endpoint is None:
            return False
        endpoint.delete_instance()
        audit.record(
            "webhook.removed",
            actor or audit.Actor(label="system"),
            wid,
            target=endpoint.url[:254],
            endpoint_id=endpoint_id,
        )
    return True


def set_paused(workspace: Workspace | int, endpoint_id: int, paused: bool, actor=None) -> bool:
    """Pause an endpoint, or resume it (its failed messages of the last day are tried again)."""
    from poggio import audit

    wid = workspace if isinstance(workspace, int) else workspace.id
    now = utcnow()
    with writing():
        changed = (
            WebhookEndpoint.update(paused_at=now if paused else None, failing_since=None)
            .where((WebhookEndpoint.id == endpoint_id) & (WebhookEndpoint.workspace == wid))
            .execute()
        )
        if changed:
            audit.record(
                "webhook.paused" if paused else "webhook.resumed",
                actor or audit.Actor(label="system"),
                wid,
                target=str(endpoint_id),
                endpoint_id=endpoint_id,
            )
        if changed and not paused:
            WebhookMessage.update(status="pending", next_attempt_at=now, attempts=0, created_at=now).where(
                (WebhookMessage.endpoint == endpoint_id)
                & (WebhookMessage.status == "failed")
                & (WebhookMessage.created_at >= now - dt.timedelta(days=1))
            ).execute()
    return bool(changed)


def deliveries(endpoint: WebhookEndpoint, limit: int = 50) -> list[dict]:
    """The endpoint's latest delivery attempts, newest first, with their message's event."""
    rows = (
        WebhookAttempt.select(WebhookAttempt, WebhookMessage.msg_id, WebhookMessage.event_type, WebhookMessage.status)
        .join(WebhookMessage)
        .where(WebhookAttempt.endpoint == endpoint.id)
        .order_by(WebhookAttempt.id.desc())
        .limit(limit)
        .dicts()
    )
    return list(rows)


def pending_count(endpoint: WebhookEndpoint) -> int:
    return (
        WebhookMessage.select()
        .where((WebhookMessage.endpoint == endpoint.id) & (WebhookMessage.status == "pending"))
        .count()
    )


def _clean(detail: dict) -> dict:
    return {k: v for k, v in detail.items() if k not in NEVER_SENT}


def _enqueue_sql(dedupe: bool) -> str:
    p = database.param
    conflict = " ON CONFLICT DO NOTHING" if dedupe else ""
    return (
        "INSERT INTO webhook_message (workspace_id, endpoint_id, msg_id, event_type, data, dedupe, created_at, "
        "status, attempts, next_attempt_at) "
        f"SELECT workspace_id, id, {p}, {p}, {p}, {p}, {p}, 'pending', 0, {p} FROM webhook_endpoint "
        f"WHERE workspace_id = {p} AND paused_at IS NULL AND events LIKE {p}" + conflict
    )


def enqueue(event_type: str, workspace_id: int, data: dict, dedupe: str | None = None) -> None:
    """Put ``event_type`` in the outbox of each of the workspace's endpoints that wants it, in the
    caller's transaction (one statement; on PostgreSQL sent with the transaction's next one)."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown webhook event {event_type!r}")
    from poggio.db import write_later

    now = utcnow()
    body = json.dumps(_clean(data), sort_keys=True, default=str, separators=(",", ":"))
    msg_id = "msg_" + secrets.token_urlsafe(18)
    write_later(
        _enqueue_sql(dedupe is not None),
        (msg_id, event_type, body, dedupe, now, now, workspace_id, f"%,{event_type},%"),
    )


def from_audit(action: str, workspace, actor_label: str, target: str, detail: dict) -> None:
    """The webhook event of an audit action, if it is one (called by :func:`poggio.audit.record`)."""
    event = FROM_AUDIT.get(action)
    if event is None or workspace is None:
        return
    wid = workspace if isinstance(workspace, int) else workspace.id
    enqueue(event, wid, {"actor": actor_label, "target": target, **detail})


def send_test(endpoint: WebhookEndpoint, actor_label: str) -> None:
    """A ``webhook.test`` message for this endpoint alone (whatever events it chose)."""
    now = utcnow()
    with writing():
        WebhookMessage.create(
            workspace=endpoint.workspace_id,
            endpoint=endpoint,
            msg_id="msg_" + secrets.token_urlsafe(18),
            event_type="webhook.test",
            data=json.dumps({"actor": actor_label}),
            created_at=now,
            next_attempt_at=now,
        )


def payload(message: WebhookMessage, workspace_slug: str) -> bytes:
    """The body delivered for ``message``: the same bytes at every attempt (what is signed)."""
    data = {"workspace": workspace_slug, **json.loads(message.data)}
    return json.dumps(
        {"type": message.event_type, "timestamp": message.created_at.isoformat(timespec="seconds") + "Z", "data": data},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
