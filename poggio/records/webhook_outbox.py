"""The webhook outbox: the event types, the endpoint and message tables, and how a change puts its event
in the outbox of each endpoint that wants it, in the change's own transaction.

:func:`poggio.records.audit.record` calls :func:`from_audit` for every audit action that is a webhook event, so
a change and its event are committed together or not at all. The endpoints are managed in
:mod:`poggio.notices.webhooks`; the running servers deliver the outbox (:mod:`poggio.notices.webhook_delivery`).
"""

from __future__ import annotations

import json
import secrets

from peewee import CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from poggio.storage.db import BaseModel, database, utcnow, write_later
from poggio.storage.models import User, Workspace

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
    "oauth.requested": "app.requested",  # a member asked (poggio.identity.app_access)
    "oauth.request_approved": "app.approved",
    "oauth.request_denied": "app.denied",
    "workspace.policy_changed": "policy.changed",
    "workspace.app_policy_changed": "policy.changed",
    "workspace.tool_switched": "policy.changed",  # a tool switched on or off (poggio.identity.switches)
    "oauth.id_jag_accepted": "app.connected",  # connected by the identity provider
    "data.written": "tool.write",
}
# detail keys never sent, whatever an audit event holds
NEVER_SENT = {"secret", "token", "password", "client_secret", "code", "refresh_token"}


class WebhookEndpoint(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    workspace_id: ForeignKeyField[int]
    url = CharField(max_length=2000)
    # the signing secret, sealed (poggio.security.sealing): read back to sign each delivery; shown once, when added
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
    workspace_id: ForeignKeyField[int]
    endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="+", index=False)
    endpoint_id: ForeignKeyField[int]
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
    now = utcnow()
    body = json.dumps(_clean(data), sort_keys=True, default=str, separators=(",", ":"))
    msg_id = "msg_" + secrets.token_urlsafe(18)
    write_later(
        _enqueue_sql(dedupe is not None),
        (msg_id, event_type, body, dedupe, now, now, workspace_id, f"%,{event_type},%"),
    )


def from_audit(action: str, workspace, actor_label: str, target: str, detail: dict) -> None:
    """The webhook event of an audit action, if it is one (called by :func:`poggio.records.audit.record`)."""
    event = FROM_AUDIT.get(action)
    if event is None or workspace is None:
        return
    wid = workspace if isinstance(workspace, int) else workspace.id
    enqueue(event, wid, {"actor": actor_label, "target": target, **detail})


def payload(message: WebhookMessage, workspace_slug: str) -> bytes:
    """The body delivered for ``message``: the same bytes at every attempt (what is signed)."""
    data = {"workspace": workspace_slug, **json.loads(message.data)}
    return json.dumps(
        {"type": message.event_type, "timestamp": message.created_at.isoformat(timespec="seconds") + "Z", "data": data},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
