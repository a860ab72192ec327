"""Settings > Webhooks: admins add an endpoint (secret shown once), read its delivery log, send a test
event, pause, resume and remove it; members and other workspaces' admins cannot."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from poggio.notices.webhook_delivery import Deliverer
from poggio.records.webhook_outbox import WebhookEndpoint, WebhookMessage
from poggio.storage.db import database


@pytest.fixture
def private_ok(app):
    core = app.extensions["poggio"]
    core.settings = dataclasses.replace(core.settings, webhook_allow_private=True)
    return app


def _add(admin, url, events=()):
    admin.get("/settings/webhooks/")
    return admin.post("/settings/webhooks/", {"url": url, "events": list(events)})


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(admin, private_ok):
    page = _add(admin, "http://127.0.0.1:9/hooks", ["token.created", "app.connected"])
    assert page.status_code == 200
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", page.get_data(as_text=True)).group(0)
    from poggio.notices.webhooks import signing_secret

    stored = WebhookEndpoint.get()
    assert signing_secret(stored, os.environ["POGGIO_SECRET_KEY"]) == secret and secret not in stored.secret
    again = admin.get("/settings/webhooks/").get_data(as_text=True)
    assert "whsec_" not in again and "http://127.0.0.1:9/hooks" in again and "token.created, app.connected" in again


def test_a_refused_url_is_an_inline_error(admin):
    for url, why in [("http://example.com/x", "must use https"), ("https://10.0.0.1/x", "private or loopback")]:
        page = _add(admin, url)
        assert page.status_code == 422 and why in page.get_data(as_text=True)
    assert WebhookEndpoint.select().count() == 0


def test_send_test_event_and_the_delivery_log(admin, private_ok):
    _add(admin, "http://127.0.0.1:9/hooks")  # nothing listens on port 9: the attempt fails to connect
    endpoint = WebhookEndpoint.get()
    admin.get(f"/settings/webhooks/{endpoint.id}")
    assert admin.post(f"/settings/webhooks/{endpoint.id}/test").status_code == 302
    assert WebhookMessage.get().event_type == "webhook.test"
    with database.connection_context():
        Deliverer(allow_private=True, timeout=2, secret_key=os.environ["POGGIO_SECRET_KEY"]).run_once()
    log = admin.get(f"/settings/webhooks/{endpoint.id}").get_data(as_text=True)
    assert "webhook.test" in log and "could not connect" in log and "Failing since" in log
    admin.post(f"/settings/webhooks/{endpoint.id}/pause")
    assert WebhookEndpoint.get().paused_at is not None
    admin.post(f"/settings/webhooks/{endpoint.id}/resume")
    assert WebhookEndpoint.get().paused_at is None
    assert admin.post(f"/settings/webhooks/{endpoint.id}/remove").status_code == 302
    assert WebhookEndpoint.select().count() == 0


def test_members_and_other_workspaces_cannot(browser, admin, private_ok):
    _add(admin, "http://127.0.0.1:9/hooks")
    endpoint = WebhookEndpoint.get()
    other = type(admin)(private_ok.test_client())
    other.sign_in("admin@initrode.example")
    other.get("/settings/webhooks/")
    assert other.get(f"/settings/webhooks/{endpoint.id}").status_code == 404
    assert other.post(f"/settings/webhooks/{endpoint.id}/remove").status_code == 404
    member = type(admin)(private_ok.test_client())
    member.sign_in("member@acme.example")
    assert member.get("/settings/webhooks/").status_code == 403
    assert admin.post(f"/settings/webhooks/{endpoint.id}/remove", csrf=False).status_code == 400
    assert WebhookEndpoint.select().count() == 1


def test_endpoint_changes_are_on_the_audit_log(admin, private_ok):
    from poggio.storage.models import AuditEvent

    _add(admin, "http://127.0.0.1:9/hooks")
    endpoint = WebhookEndpoint.get()
    admin.get(f"/settings/webhooks/{endpoint.id}")
    admin.post(f"/settings/webhooks/{endpoint.id}/pause")
    admin.post(f"/settings/webhooks/{endpoint.id}/resume")
    admin.post(f"/settings/webhooks/{endpoint.id}/remove")
    actions = [
        e.action for e in AuditEvent.select().where(AuditEvent.action.startswith("webhook.")).order_by(AuditEvent.id)
    ]
    assert actions == ["webhook.added", "webhook.paused", "webhook.resumed", "webhook.removed"]
    assert all(
        e.actor_label == "admin@acme.example"
        for e in AuditEvent.select().where(AuditEvent.action.startswith("webhook."))
    )
    assert "whsec_" not in "".join(e.detail for e in AuditEvent.select())
