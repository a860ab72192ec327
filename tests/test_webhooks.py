"""Webhooks: endpoints, the outbox written with the change, signed deliveries (Standard Webhooks) to a
real receiver started here that verifies them with the same library, retries, bad endpoints, and a
server restarted mid-retry."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from instances import BACKENDS, ServerProcess, drop_instance, make_instance
from standardwebhooks import Webhook, WebhookVerificationError

from poggio.commands.cli import main
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.notices.webhook_delivery import Deliverer, backoff
from poggio.notices.webhooks import WebhookError, add_endpoint, check_url, send_test, set_paused
from poggio.records.audit import Actor
from poggio.records.webhook_outbox import WebhookAttempt, WebhookEndpoint, WebhookMessage
from poggio.runtime.schema import upgrade
from poggio.storage.db import database, writing

CLI = Actor.cli()


class Receiver:
    """An HTTP server on loopback that checks each post's signature with ``standardwebhooks``.

    ``behaviour`` says how it answers: "ok"; "fail:N" (500 for the first N posts, then 200); "500";
    "hang" (never answers); "huge" (200 with an endless body); "redirect" (302 to a private address)."""

    def __init__(self, behaviour: str = "ok"):
        self.behaviour = behaviour
        self.secret: str | None = None
        self.verified: list[dict] = []  # payloads whose signature checked out, with their webhook-id
        self.refused: list[str] = []
        self.posts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.posts += 1
                    n = receiver.posts
                mode = receiver.behaviour
                if mode == "hang":
                    receiver._stop.wait(30)
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://10.0.0.1/steal")
                    self.end_headers()
                    return
                if mode == "500" or (mode.startswith("fail:") and n <= int(mode[5:])):
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError as exc:
                    receiver.refused.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.verified.append({**payload, "_id": self.headers["webhook-id"]})
                self.send_response(200)
                if mode == "huge":
                    self.end_headers()
                    try:
                        while not receiver._stop.is_set():
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                    return
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(behaviour="ok") -> Receiver:
        r = Receiver(behaviour)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def wait_for(check, timeout=30.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def key() -> str:
    """The installation's secret key: the test instance's, which its servers use too."""
    return os.environ["POGGIO_SECRET_KEY"]


def fast(**kwargs) -> Deliverer:
    return Deliverer(
        **{"allow_private": True, "timeout": 2.0, "first_retry": 0.2, "poll": 0.05, "secret_key": key(), **kwargs}
    )


def subscribe(ws, receiver: Receiver, events=None):
    added = add_endpoint(ws, receiver.url, events, CLI, allow_private=True, secret_key=key())
    receiver.secret = added.secret
    return added.endpoint


def deliver_until(deliverer: Deliverer, check, timeout=30.0, what="a delivery"):
    def step():
        with database.connection_context():
            deliverer.run_once()
        return check()

    return wait_for(step, timeout, what)


@pytest.fixture
def ws(instance):
    return create_workspace("acme", "Acme", True, CLI)


def tokens():
    return TokenService(known_packs={"accounts", "contacts", "revenue"})


def test_an_event_is_delivered_signed_with_no_secret_in_it(ws, receivers):
    r = receivers()
    subscribe(ws, r)
    issued = tokens().create(ws, "ci", CLI)
    deliver_until(fast(), lambda: r.verified)
    (message,) = r.verified
    assert message["type"] == "token.created"
    assert message["data"]["workspace"] == "acme" and message["data"]["target"] == "ci"
    assert message["data"]["token_id"] == issued.token.id
    assert issued.plaintext not in json.dumps(message) and not r.refused
    row = WebhookMessage.get()
    assert row.status == "delivered" and row.msg_id == message["_id"]
    assert [a.status_code for a in WebhookAttempt.select()] == [200]


def test_the_outbox_is_written_in_the_transaction_of_the_change(ws, receivers):
    r = receivers()
    subscribe(ws, r)
    with pytest.raises(RuntimeError):
        with writing():
            tokens().create(ws, "rolled-back", CLI)
            raise RuntimeError("the change fails after the token was written")
    assert WebhookMessage.select().count() == 0
    token = tokens().create(ws, "kept", CLI).token
    tokens().revoke(token, CLI)
    assert [m.event_type for m in WebhookMessage.select().order_by(WebhookMessage.id)] == [
        "token.created",
        "token.revoked",
    ]


def test_an_endpoint_gets_only_the_events_it_chose_and_only_of_its_workspace(ws, receivers):
    other = create_workspace("globex", "Globex", True, CLI)
    mine, theirs = receivers(), receivers()
    subscribe(ws, mine, "token.revoked")
    subscribe(other, theirs)
    token = tokens().create(ws, "ci", CLI).token
    tokens().revoke(token, CLI)
    deliver_until(fast(), lambda: mine.verified)
    assert [m["type"] for m in mine.verified] == ["token.revoked"]
    assert all(m["data"]["workspace"] == "acme" for m in mine.verified)
    assert theirs.posts == 0 and WebhookMessage.select().count() == 1


def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(ws, receivers):
    r = receivers("fail:2")
    endpoint = subscribe(ws, r)
    tokens().create(ws, "ci", CLI)
    deliver_until(fast(), lambda: r.verified)
    attempts = list(WebhookAttempt.select().order_by(WebhookAttempt.id))
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert attempts[1].at >= attempts[0].at
    assert WebhookEndpoint.get_by_id(endpoint.id).failing_since is None
    assert len(r.verified) == 1  # one message, delivered once
    assert backoff(1, 5).total_seconds() == 5 and backoff(3, 5).total_seconds() == 20
    assert backoff(30, 5).total_seconds() == 7200


@pytest.mark.parametrize("behaviour", ["hang", "huge", "redirect", "500"])
def test_a_bad_endpoint_fails_cleanly_in_bounded_time(ws, receivers, behaviour):
    r = receivers(behaviour)
    endpoint = subscribe(ws, r)
    tokens().create(ws, "ci", CLI)
    deliverer = fast(timeout=1.0)
    started = time.monotonic()
    with database.connection_context():
        deliverer.run_once()
    assert time.monotonic() - started < 5
    attempt = WebhookAttempt.get()
    message = WebhookMessage.get()
    if behaviour == "huge":  # a 200 is a delivery: the endless body is not read
        assert message.status == "delivered"
        return
    assert message.status == "pending" and message.attempts == 1
    expected = {"hang": "no answer", "redirect": "redirect", "500": "HTTP 500"}[behaviour]
    assert attempt.error and expected in attempt.error
    assert WebhookEndpoint.get_by_id(endpoint.id).failing_since is not None


def test_an_endpoint_failing_for_the_whole_retry_window_is_paused_then_resumed(ws, receivers):
    r = receivers("500")
    endpoint = subscribe(ws, r)
    tokens().create(ws, "ci", CLI)
    deliverer = fast(retry_for=1.0, first_retry=0.1)
    deliver_until(deliverer, lambda: WebhookEndpoint.get_by_id(endpoint.id).paused_at, what="the pause")
    message = WebhookMessage.get()
    assert message.status == "failed" and message.attempts >= 2
    posts = r.posts
    tokens().create(ws, "ci2", CLI)  # a paused endpoint gets no new messages
    with database.connection_context():
        deliverer.run_once()
    assert r.posts == posts and WebhookMessage.select().count() == 1
    r.behaviour = "ok"
    assert set_paused(ws, endpoint.id, False)
    deliver_until(fast(), lambda: r.verified, what="the delivery after resuming")
    assert WebhookMessage.get().status == "delivered"


def test_private_and_plain_http_endpoints_are_refused(ws, receivers):
    for url, why in [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "private or loopback"),
        ("https://10.1.2.3/hook", "private or loopback"),
        ("ftp://example.com/x", "https"),
        ("https://user:pw@example.com/x", "credentials"),
        ("not a url", "https"),
    ]:
        with pytest.raises(WebhookError, match=why):
            check_url(url, allow_private=False)
    with pytest.raises(WebhookError, match="unknown event"):
        add_endpoint(ws, "http://127.0.0.1:9/x", "token.created,nope", CLI, allow_private=True, secret_key=key())
    # an endpoint added while private addresses were allowed is refused at delivery once they are not
    r = receivers()
    subscribe(ws, r)
    tokens().create(ws, "ci", CLI)
    with database.connection_context():
        fast(allow_private=False).run_once()
    assert r.posts == 0 and "private or loopback" in WebhookAttempt.get().error


def test_the_test_event_reaches_the_endpoint_whatever_it_chose(ws, receivers):
    r = receivers()
    endpoint = subscribe(ws, r, "token.revoked")
    send_test(endpoint, "admin@example.com")
    deliver_until(fast(), lambda: r.verified)
    assert r.verified[0]["type"] == "webhook.test"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_deliverers_never_deliver_one_message_twice(tmp_path, receivers, backend):
    inst = make_instance(tmp_path, backend)
    db = inst.activate()
    try:
        from poggio.runtime.plugins import PackRegistry

        with db.connection_context():
            upgrade(PackRegistry.load())
            ws = create_workspace("acme", "Acme", True, CLI)
            r = receivers()
            subscribe(ws, r)
            service = tokens()
            for i in range(30):
                service.create(ws, f"t{i}", CLI)
        a, b = fast(), fast()

        def run(deliverer):
            with db.connection_context():
                deliverer.run_once()

        threads = [threading.Thread(target=run, args=(d,)) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ids = [m["_id"] for m in r.verified]
        assert len(ids) == 30 and len(set(ids)) == 30
    finally:
        db.close()
        drop_instance(inst)


def test_cli_add_prints_the_secret_once_list_and_remove(ws, receivers):
    runner = CliRunner()
    added = runner.invoke(main, ["webhook", "add", "--workspace", "acme", "https://10.0.0.1/x"])
    assert added.exit_code == 1 and "private or loopback" in added.output
    r = receivers()
    added = runner.invoke(
        main,
        ["webhook", "add", "--workspace", "acme", r.url, "--events", "token.created,app.connected"],
        env={"POGGIO_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and Webhook(secret)
    listed = runner.invoke(main, ["webhook", "list", "--workspace", "acme"])
    assert r.url in listed.output and "token.created,app.connected" in listed.output and secret not in listed.output
    endpoint_id = WebhookEndpoint.get().id
    assert runner.invoke(main, ["webhook", "remove", "--workspace", "globex", str(endpoint_id)]).exit_code == 1
    removed = runner.invoke(main, ["webhook", "remove", "--workspace", "acme", str(endpoint_id)])
    assert removed.exit_code == 0 and WebhookEndpoint.select().count() == 0


def test_a_server_restarted_mid_retry_delivers_what_it_had_not(instance, receivers):
    """The MCP server delivers the outbox; stopped after a failed attempt, the message waits in the
    database, and the next server delivers it."""
    ws = create_workspace("acme", "Acme", True, CLI)
    r = receivers("fail:1")
    subscribe(ws, r)
    env = {
        "POGGIO_WEBHOOK_ALLOW_PRIVATE": "true",
        "POGGIO_WEBHOOK_FIRST_RETRY_SECONDS": "3",
        "POGGIO_WEBHOOK_POLL_SECONDS": "0.1",
    }
    server = ServerProcess(instance, extra_env=env)
    try:
        tokens().create(ws, "ci", CLI)
        wait_for(lambda: r.posts >= 1, what="the first, failed, attempt")
    finally:
        server.stop()
    with database.connection_context():
        assert WebhookMessage.get().status == "pending" and not r.verified
    server = ServerProcess(instance, extra_env=env)
    try:
        wait_for(lambda: r.verified, what="the delivery by the restarted server")
    finally:
        server.stop()
    assert len(r.verified) == 1 and r.verified[0]["type"] == "token.created"


def test_the_portal_delivers_too(instance, receivers):
    from instances import PortalProcess

    ws = create_workspace("acme", "Acme", True, CLI)
    r = receivers()
    subscribe(ws, r)
    portal = PortalProcess(
        instance, extra_env={"POGGIO_WEBHOOK_ALLOW_PRIVATE": "true", "POGGIO_WEBHOOK_POLL_SECONDS": "0.1"}
    )
    try:
        tokens().create(ws, "ci", CLI)
        wait_for(lambda: r.verified, what="the portal's delivery")
    finally:
        portal.stop()
    assert [m["type"] for m in r.verified] == ["token.created"]


def test_expiring_tokens_and_policy_changes_are_events(ws, receivers):
    from poggio.identity.policy import set_policy

    r = receivers()
    subscribe(ws, r, "token.expiring,policy.changed")
    tokens().create(ws, "soon", CLI, expires="3d")
    tokens().create(ws, "later", CLI, expires="30d")
    deliverer = fast()
    deliverer.sweep()
    deliverer.sweep()  # one notice per token and expiry, however often the sweep runs
    set_policy(ws, CLI, max_lifetime="60d")
    deliver_until(deliverer, lambda: len(r.verified) >= 2)
    kinds = sorted((m["type"], m["data"].get("target")) for m in r.verified)
    assert kinds == [("policy.changed", "acme"), ("token.expiring", "soon")]
    from poggio.identity.switches import SwitchService
    from poggio.runtime.plugins import PackRegistry

    SwitchService(PackRegistry.load()).switch(ws, CLI, off=["get_account"])
    deliver_until(deliverer, lambda: len(r.verified) >= 3)
    switched = r.verified[-1]
    assert switched["type"] == "policy.changed" and switched["data"]["target"] == "get_account"
    assert switched["data"]["on"] is False and switched["data"]["pack"] == "accounts"


def test_unusual_use_is_an_event_once_a_day(ws, receivers):
    import datetime as dt

    from poggio.storage.db import utcnow
    from poggio.storage.models import Activity

    r = receivers()
    subscribe(ws, r, "usage.unusual")
    token = tokens().create(ws, "ci", CLI).token
    now = utcnow()
    row = {
        "workspace": ws.id,
        "kind": "token",
        "subject_id": token.id,
        "tool": "search",
        "outcome": "ok",
        "latency_ms": 1,
        "client": "ci-bot",
    }
    Activity.insert_many(
        [
            {**row, "at": now - dt.timedelta(days=3), "ip": "10.0.0.5"},
            {**row, "at": now - dt.timedelta(minutes=3), "ip": "198.51.100.7"},
        ]
    ).execute()
    deliverer = fast()
    deliverer.sweep()
    deliverer.sweep()
    deliver_until(deliverer, lambda: r.verified)
    (message,) = r.verified
    assert message["type"] == "usage.unusual" and message["data"]["network"] == "198.51.100.0/24"
    assert message["data"]["workspace"] == "acme" and WebhookMessage.select().count() == 1


def test_apps_connected_and_disconnected_are_events_without_their_secret(ws, receivers):
    from poggio.identity.oauth import OAuthService
    from poggio.storage.models import OAuthGrant

    r = receivers()
    subscribe(ws, r, "app.connected,app.disconnected")
    oauth = OAuthService(known_packs={"accounts"})
    issued = oauth.create_confidential(ws, "Robot", CLI)
    oauth.revoke_grant(OAuthGrant.get(OAuthGrant.client == issued.client.id), CLI)
    deliver_until(fast(), lambda: len(r.verified) >= 2)
    assert sorted(m["type"] for m in r.verified) == ["app.connected", "app.disconnected"]
    assert issued.secret not in json.dumps(r.verified)


@pytest.mark.postgres
def test_on_postgresql_the_outbox_row_rides_with_the_change(tmp_path, receivers):
    """On PostgreSQL the outbox INSERT is held back and sent with the transaction's next statement
    (poggio.storage.db.write_later): committed with the change, rolled back with it."""
    from poggio.runtime.plugins import PackRegistry

    inst = make_instance(tmp_path, "postgres")
    db = inst.activate()
    try:
        with db.connection_context():
            upgrade(PackRegistry.load())
            ws = create_workspace("acme", "Acme", True, CLI)
            r = receivers()
            subscribe(ws, r, "token.created,token.revoked")
            with pytest.raises(RuntimeError):
                with writing():
                    tokens().create(ws, "rolled-back", CLI)
                    raise RuntimeError("after the change")
            assert WebhookMessage.select().count() == 0
            token = tokens().create(ws, "kept", CLI).token
            tokens().revoke(token, CLI)
        deliver_until(fast(), lambda: len(r.verified) >= 2)
        assert [m["type"] for m in sorted(r.verified, key=lambda m: m["timestamp"] + m["type"])] in (
            ["token.created", "token.revoked"],
            ["token.revoked", "token.created"],
        )
        assert {m["data"]["target"] for m in r.verified} == {"kept"}
    finally:
        db.close()
        drop_instance(inst)


def test_an_idle_poll_takes_no_write_lock(ws):
    """With nothing due, a deliverer's poll (every second in every server process) only reads: it
    does not queue for SQLite's write lock behind the writers of tool calls."""
    held, release = threading.Event(), threading.Event()

    def writer():
        with database.connection_context(), writing():
            held.set()
            release.wait(15)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with database.connection_context():
            assert fast().claim() == []
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()


def test_the_signing_secret_is_stored_sealed(ws, receivers):
    """The database holds the endpoint's signing secret sealed under POGGIO_SECRET_KEY: a copy of the
    database alone gives no one the means to forge deliveries. Deliveries are still signed with it; under
    another secret key the endpoint's attempts fail, saying why."""
    r = receivers()
    endpoint = subscribe(ws, r, "token.created")
    stored = WebhookEndpoint.get_by_id(endpoint.id).secret
    assert r.secret.startswith("whsec_") and r.secret not in stored and "whsec_" not in stored
    TokenService().create(ws, "sealed", CLI)
    deliver_until(fast(), lambda: r.verified, what="a delivery signed with the unsealed secret")
    assert r.verified[0]["type"] == "token.created"
    r2 = receivers()
    subscribe(ws, r2, "token.created")
    TokenService().create(ws, "other key", CLI)
    fast(secret_key="another installation's key").run_once()
    from poggio.records.webhook_outbox import WebhookAttempt

    assert not r2.verified
    assert any("POGGIO_SECRET_KEY changed" in (a.error or "") for a in WebhookAttempt.select())
