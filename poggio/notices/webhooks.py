"""Webhooks: a workspace's endpoints, added, paused and removed by its admins (the outbox of messages for
them, and the event types, are :mod:`poggio.records.webhook_outbox`'s).

An admin adds an endpoint (a URL, the events it wants); it gets a signing secret (``whsec_…``, shown
once) with which every delivery is signed as the Standard Webhooks specification says. A change that
causes an event writes the event's message into the outbox (``webhook_message``) in its own
transaction, one row per endpoint that wants it: committed with the change or not at all. The running
servers deliver the outbox (:mod:`poggio.notices.webhook_delivery`). A payload holds the workspace's slug and
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

from poggio.errors import PoggioError
from poggio.records import audit
from poggio.records.webhook_outbox import (
    DEFAULT_EVENTS,
    EVENTS,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from poggio.security import sealing
from poggio.security.addresses import AddressRefused, resolve_checked
from poggio.storage.db import dict_rows, utcnow, writing
from poggio.storage.models import Workspace


class WebhookError(PoggioError, ValueError):
    """An endpoint cannot be added as asked; the message says why, for a person."""


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
    """The endpoint's ``whsec_…`` secret, unsealed; :class:`poggio.security.sealing.Unsealable` when it was sealed
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
    )
    return list(dict_rows(rows))


def pending_count(endpoint: WebhookEndpoint) -> int:
    return (
        WebhookMessage.select()
        .where((WebhookMessage.endpoint == endpoint.id) & (WebhookMessage.status == "pending"))
        .count()
    )


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
