"""The audit log: who did what to which token, user or workspace, when, and from where."""

from __future__ import annotations

import json

from poggio.records import webhook_outbox
from poggio.storage.db import tuple_rows, utcnow
from poggio.storage.models import AuditEvent, User, Workspace
from poggio.storage.prepared import Prepared

ACTIONS = {
    "token.created": "Token created",
    "token.renamed": "Token renamed",
    "token.expiry_changed": "Token expiry changed",
    "token.rotated": "Token rotated",
    "token.scope_changed": "Token packs changed",
    "token.revoked": "Token revoked",
    "token.limits_changed": "Token network or rate limit changed",
    "user.signed_in": "Signed in",
    "user.sign_in_failed": "Sign-in failed",
    "user.signed_out": "Signed out",
    "user.created": "User created",
    "user.password_changed": "Password changed",
    "user.removed": "User removed",
    "user.deactivated": "User deactivated",
    "workspace.created": "Workspace created",
    "workspace.entitlement_changed": "MCP entitlement changed",
    "workspace.policy_changed": "Token policy changed",
    "workspace.app_policy_changed": "App policy changed",
    "workspace.tool_switched": "Tool switched on or off",
    "data.imported": "Data imported",
    "oauth.client_registered": "OAuth app registered",
    "oauth.client_refused": "OAuth app refused (its registration, or the installation's trust policy)",
    "oauth.unused_clients_forgotten": "OAuth apps never approved forgotten",
    "oauth.client_created": "OAuth client created",
    "oauth.client_revoked": "OAuth client revoked",
    "oauth.approved": "App approved",
    "oauth.denied": "App denied",
    "oauth.requested": "App requested by a member",
    "oauth.request_approved": "App request approved",
    "oauth.request_denied": "App request denied",
    "oauth.refused_by_policy": "App refused by the app policy",
    "oauth.code_reused": "Authorization code reused",
    "oauth.refresh_reused": "Refresh token reused: app disconnected",
    "oauth.scope_added": "Connected app given more access",
    "oauth.grant_revoked": "App disconnected",
    "data.written": "Changed by a tool",
    "sso.configured": "Single sign-on configured",
    "sso.removed": "Single sign-on removed",
    "sso.sign_in_failed": "Single sign-on failed",
    "user.provisioned": "User created by the identity provider",
    "user.role_changed": "Role changed by the identity provider",
    "scim.token_created": "SCIM token created",
    "scim.token_revoked": "SCIM token revoked",
    "scim.user_provisioned": "User provisioned by SCIM",
    "scim.user_updated": "User updated by SCIM",
    "scim.user_deprovisioned": "User deprovisioned by SCIM",
    "scim.request_refused": "SCIM request refused",
    "token.flagged_for_review": "Token flagged for review: its creator was deprovisioned",
    "token.review_cleared": "Token review cleared",
    "oauth.id_jag_accepted": "App connected by the identity provider (ID-JAG)",
    "oauth.id_jag_refused": "Identity assertion (ID-JAG) refused",
    "webhook.added": "Webhook endpoint added",
    "webhook.removed": "Webhook endpoint removed",
    "webhook.paused": "Webhook endpoint paused",
    "webhook.resumed": "Webhook endpoint resumed",
}
# Changes to a workspace's data made by write tools (token or connected app, tool, fields before and
# after): the portal's "writes only" filter, and what an activity export includes of the audit log.
WRITE_ACTIONS = ("data.written",)


class Actor:
    """Who acts: a signed-in user, or the command line."""

    def __init__(self, user: User | None = None, label: str | None = None, ip: str | None = None):
        self.user = user
        self.label = label or (user.email if user else "system")
        self.ip = ip

    @classmethod
    def cli(cls) -> Actor:
        return cls(label="cli")


def record_write(ctx, target: str, before: dict | None, after: dict | None) -> None:
    """A write tool's change, on record: who (the token or connected app of ``ctx``), the tool, the
    record and its fields before and after. Values that look like secrets are masked."""
    from poggio.records.redaction import redact

    def clean(fields: dict | None) -> dict | None:
        if fields is None:
            return None
        return {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}

    who = "app" if ctx.token_kind == "grant" else "token"
    label = f"{who}: {ctx.caller}" if ctx.caller else who
    return record(
        "data.written",
        Actor(label=label),
        ctx.workspace_id,
        target=target,
        tool=ctx.tool_name,
        **{"grant_id" if ctx.token_kind == "grant" else "token_id": ctx.token_id},
        before=clean(before),
        after=clean(after),
    )


# compiled once (a write tool records every change: peewee built this INSERT anew each time, at
# several times what SQLite takes to write the row)
_INSERT = Prepared.insert_into(AuditEvent)


def record(action: str, actor: Actor, workspace: Workspace | int | None = None, target: str = "", **detail) -> None:
    """Put ``action`` on record, in the caller's transaction (on PostgreSQL sent with its next
    statement or its COMMIT: :func:`poggio.storage.db.write_later`)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    _INSERT.write_later(
        workspace=workspace,
        actor=actor.user,
        actor_label=actor.label[:254],
        action=action,
        target=target[:254],
        detail=json.dumps(detail, sort_keys=True, default=str) if detail else "",
        ip=actor.ip,
        created_at=utcnow(),
    )
    if workspace is not None:
        if action in webhook_outbox.FROM_AUDIT:  # its webhook message, in the same transaction
            webhook_outbox.from_audit(action, workspace, actor.label, target, detail)


EXPORT_CHUNK = 2000


def write_events(workspace_id: int, since=None, until=None, chunk: int = EXPORT_CHUNK):
    """The workspace's write tool changes (``WRITE_ACTIONS``), newest first, as dicts: when, who, the
    tool, the record, its fields before and after. Read ``chunk`` rows at a time (bounded memory)."""
    import datetime as dt

    from poggio.storage.db import database

    cond = (AuditEvent.workspace == workspace_id) & AuditEvent.action.in_(WRITE_ACTIONS)
    if since is not None:
        cond &= AuditEvent.created_at >= (
            since if isinstance(since, dt.datetime) else dt.datetime.combine(since, dt.time())
        )
    if until is not None:
        cond &= AuditEvent.created_at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time())
    last = None
    while True:
        query = AuditEvent.select(
            AuditEvent.id, AuditEvent.created_at, AuditEvent.actor_label, AuditEvent.target, AuditEvent.detail
        ).where(cond if last is None else cond & (AuditEvent.id < last))
        with database.connection_context():
            rows = list(tuple_rows(query.order_by(AuditEvent.id.desc()).limit(chunk)))
        for _, at, actor, target, detail in rows:
            data = json.loads(detail) if detail else {}
            kind, subject_id = (
                ("grant", data.get("grant_id")) if "grant_id" in data else ("token", data.get("token_id"))
            )
            yield {
                "at": at.isoformat(timespec="seconds") + "Z",
                "actor": actor,
                "kind": kind,
                "subject_id": subject_id,
                "tool": data.get("tool", ""),
                "target": target,
                "before": data.get("before"),
                "after": data.get("after"),
            }
        if len(rows) < chunk:
            return
        last = rows[-1][0]


WRITE_COLUMNS = ("at", "actor", "kind", "subject_id", "tool", "target", "before", "after")


def export_writes(workspace_id: int, since=None, until=None, fmt: str = "jsonl"):
    """:func:`write_events` as JSON Lines or CSV (``before`` and ``after`` as JSON in CSV cells)."""
    import csv
    import io

    from poggio.display import cell

    if fmt == "jsonl":
        for event in write_events(workspace_id, since, until):
            yield json.dumps(event, separators=(",", ":"), default=str) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=WRITE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for event in write_events(workspace_id, since, until):
        row = {
            **event,
            "before": json.dumps(event["before"], default=str),
            "after": json.dumps(event["after"], default=str),
        }
        for key in ("actor", "tool", "target", "before", "after"):  # no control character, no formula
            row[key] = cell(row[key])
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
