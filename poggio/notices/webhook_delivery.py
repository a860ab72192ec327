"""Delivering the webhook outbox: run by both servers, in a thread of each process.

A deliverer claims the messages that are due, a few at a time, by moving their next attempt a lease
ahead in one short write transaction (on PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``, so
two processes never claim one message; on SQLite the transaction holds the database's write lock).
It then posts each one, signed with the endpoint's secret as the Standard Webhooks specification says
(``standardwebhooks``), and writes the outcome: delivered, or tried again after an exponential backoff
until a day (``POGGIO_WEBHOOK_RETRY_FOR_SECONDS``) after the event, then failed. A process that dies
mid-delivery loses nothing: its claimed messages are due again once their lease runs out. An endpoint
that has failed every attempt for that day is paused (the home page says so) until an admin resumes it.

A post is bounded: the host's addresses are checked as for every URL someone else typed
(:mod:`poggio.security.addresses`) and the connection goes to the checked address; no redirect is followed; at
most ``POGGIO_WEBHOOK_TIMEOUT_SECONDS`` in all; at most ``MAX_RESPONSE_BYTES`` of the answer read.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
from peewee import SqliteDatabase
from standardwebhooks import Webhook

from poggio.notices.webhooks import signing_secret
from poggio.records.webhook_outbox import WebhookAttempt, WebhookEndpoint, WebhookMessage, enqueue
from poggio.security.addresses import AddressRefused, resolve_checked
from poggio.security.sealing import Unsealable
from poggio.storage.db import database, tuple_rows, utcnow, writing
from poggio.storage.models import ApiToken, Workspace

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 16 * 1024
MAX_DELAY = dt.timedelta(hours=2)  # the longest wait between two attempts
BATCH = 8
SWEEP_EVERY = 300.0  # seconds between looks for expiring tokens and old messages
KEEP_DAYS = 30  # delivered and failed messages (and their attempts) are kept this long
EXPIRING_WITHIN = dt.timedelta(days=7)


def backoff(attempts: int, first: float) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: ``first`` seconds, doubled each time, at most
    :data:`MAX_DELAY`."""
    return min(dt.timedelta(seconds=first * 2 ** max(attempts - 1, 0)), MAX_DELAY)


class Deliverer:
    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        first_retry: float = 5.0,
        retry_for: float = 86400.0,
        poll: float = 1.0,
        workers: int = 4,
        secret_key: str,
    ):
        self.secret_key = secret_key  # what the endpoints' signing secrets are sealed under
        self.allow_private = allow_private
        self.timeout = timeout
        self.first_retry = first_retry
        self.retry_for = dt.timedelta(seconds=retry_for)
        self.poll = poll
        self.lease = dt.timedelta(seconds=timeout * 3 + 30)  # longer than any one attempt takes
        self.workers = workers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0

    @classmethod
    def from_settings(cls, settings) -> Deliverer:
        return cls(
            secret_key=settings.secret_key,
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout_seconds,
            first_retry=settings.webhook_first_retry_seconds,
            retry_for=settings.webhook_retry_for_seconds,
            poll=settings.webhook_poll_seconds,
        )

    # -- claiming -----------------------------------------------------------------------------------
    def claim(self, limit: int = BATCH) -> list[WebhookMessage]:
        """Messages due now, each claimed by this process for one lease."""
        now = utcnow()
        paused = WebhookEndpoint.select(WebhookEndpoint.id).where(WebhookEndpoint.paused_at.is_null(False))
        due = (
            (WebhookMessage.status == "pending")
            & (WebhookMessage.next_attempt_at <= now)
            & WebhookMessage.endpoint.not_in(paused)
        )
        # looked for first without a write transaction: an idle poll must not take SQLite's write lock
        if not WebhookMessage.select(WebhookMessage.id).where(due).exists():
            return []
        with writing():
            query = (
                WebhookMessage.select(WebhookMessage.id)
                .where(due)
                .order_by(WebhookMessage.next_attempt_at)
                .limit(limit)
            )
            if not isinstance(database.obj, SqliteDatabase):
                query = query.for_update(skip_locked=True)
            ids = [row.id for row in query]
            if not ids:
                return []
            WebhookMessage.update(next_attempt_at=now + self.lease).where(WebhookMessage.id.in_(ids)).execute()
            return list(WebhookMessage.select().where(WebhookMessage.id.in_(ids)))

    # -- one attempt ----------------------------------------------------------------------------------
    def post(self, endpoint: WebhookEndpoint, msg_id: str, body: bytes) -> tuple[int | None, str | None]:
        """Post ``body`` to the endpoint, signed: (HTTP status, None) when it answered 2xx, else
        (status or None, why it failed)."""
        parts = urlsplit(endpoint.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = resolve_checked(
                parts.hostname or "", port, self.allow_private, what="the endpoint URL", fetched="webhooks"
            )
        except AddressRefused as exc:
            return None, str(exc)
        try:
            secret = signing_secret(endpoint, self.secret_key)
        except Unsealable:
            return None, (
                "the endpoint's signing secret cannot be read: POGGIO_SECRET_KEY changed since it was "
                "added; remove the endpoint and add it again"
            )
        host = f"[{address}]" if ":" in address else address
        target = f"{parts.scheme}://{host}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        now = dt.datetime.now(dt.UTC)
        headers = {
            "Host": parts.netloc,
            "Content-Type": "application/json",
            "User-Agent": "Poggio-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        }
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        deadline = time.monotonic() + self.timeout
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as http:
                with http.stream("POST", target, content=body, headers=headers, extensions=extensions) as response:
                    read = 0
                    for chunk in response.iter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                            break  # the answer's body is not ours to wait for
                    status = response.status_code
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            return None, f"could not connect ({type(exc).__name__})"
        if time.monotonic() > deadline:
            return status, f"answered after more than {self.timeout:g} s"
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, f"answered with a redirect (HTTP {status}), which is not followed"
        return status, f"answered HTTP {status}"

    def deliver(self, message: WebhookMessage) -> bool:
        """One attempt at ``message``, its outcome written; True when delivered."""
        from poggio.records.webhook_outbox import payload

        with database.connection_context():
            endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == message.endpoint_id)
            if endpoint is None:
                return False  # removed meanwhile: its messages went with it
            slug = Workspace.get_by_id(message.workspace_id).slug
        started = time.monotonic()
        try:
            status, error = self.post(endpoint, message.msg_id, payload(message, slug))
        except Exception as exc:  # a bug here must not stop the deliverer: the message is tried again
            log.exception("webhook delivery of %s failed", message.msg_id)
            status, error = None, f"internal error ({type(exc).__name__})"
        took = (time.monotonic() - started) * 1000
        with database.connection_context():
            self._outcome(message, endpoint, status, error, took)
        return error is None

    def _outcome(self, message, endpoint, status, error, took) -> None:
        now = utcnow()
        with writing():
            WebhookAttempt.create(
                message=message.id,
                endpoint=endpoint.id,
                at=now,
                status_code=status,
                error=error[:300] if error else None,
                duration_ms=round(took, 1),
            )
            attempts = message.attempts + 1
            if error is None:
                WebhookMessage.update(
                    status="delivered", attempts=attempts, last_status=status, last_error=None, next_attempt_at=now
                ).where(WebhookMessage.id == message.id).execute()
                WebhookEndpoint.update(failing_since=None).where(
                    (WebhookEndpoint.id == endpoint.id) & WebhookEndpoint.failing_since.is_null(False)
                ).execute()
                return
            give_up_at = message.created_at + self.retry_for
            done = now >= give_up_at
            WebhookMessage.update(
                status="failed" if done else "pending",
                attempts=attempts,
                last_status=status,
                last_error=error[:300],
                next_attempt_at=min(now + backoff(attempts, self.first_retry), give_up_at),
            ).where(WebhookMessage.id == message.id).execute()
            current = WebhookEndpoint.get_by_id(endpoint.id)
            failing_since = current.failing_since or now
            paused = current.paused_at
            if paused is None and now - failing_since >= self.retry_for:
                paused = now
                log.warning("webhook endpoint %s paused: every delivery failed for %s", endpoint.id, self.retry_for)
            WebhookEndpoint.update(failing_since=failing_since, paused_at=paused).where(
                WebhookEndpoint.id == endpoint.id
            ).execute()

    # -- the loop -----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Deliver what is due now (claimed a batch at a time); how many were tried."""
        tried = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="poggio-webhook") as pool:
            while not self._stop.is_set():
                with database.connection_context():
                    batch = self.claim()
                if not batch:
                    break
                list(pool.map(self.deliver, batch))
                tried += len(batch)
        return tried

    def sweep(self) -> None:
        """Expiry notices (``token.expiring``, once per token and expiry) and the pruning of old messages."""
        now = utcnow()
        with database.connection_context():
            wanted = WebhookEndpoint.select(WebhookEndpoint.workspace).where(
                WebhookEndpoint.events.contains(",token.expiring,") & WebhookEndpoint.paused_at.is_null()
            )
            soon = ApiToken.expires_at.between(now, now + EXPIRING_WITHIN)
            expiring = list(
                ApiToken.select(ApiToken.id, ApiToken.workspace, ApiToken.name, ApiToken.expires_at).where(
                    ApiToken.revoked_at.is_null() & soon & ApiToken.workspace.in_(wanted)
                )
            )
            for token in expiring:
                assert token.expires_at is not None  # the query's `soon`
                with writing():
                    enqueue(
                        "token.expiring",
                        token.workspace_id,
                        {
                            "target": token.name,
                            "token_id": token.id,
                            "expires_at": token.expires_at.isoformat(timespec="seconds") + "Z",
                        },
                        dedupe=f"token.expiring:{token.id}:{token.expires_at.isoformat()}",
                    )
            self._unusual(now)
            from poggio.storage.db import delete_in_batches

            delete_in_batches(
                WebhookMessage,
                WebhookMessage.status.in_(("delivered", "failed"))
                & (WebhookMessage.next_attempt_at < now - dt.timedelta(days=KEEP_DAYS)),
            )

    def _unusual(self, now: dt.datetime) -> None:
        """``usage.unusual`` for what :func:`poggio.notices.attention.unusual_use` finds, once a day per finding."""
        from poggio.notices.attention import unusual_use

        wanted = (
            WebhookEndpoint.select(WebhookEndpoint.workspace)
            .distinct()
            .where(WebhookEndpoint.events.contains(",usage.unusual,") & WebhookEndpoint.paused_at.is_null())
        )
        for (workspace_id,) in tuple_rows(wanted):
            for finding in unusual_use(workspace_id, now):
                key = finding.detail.get("network") or finding.detail.get("client") or "volume"
                with writing():
                    enqueue(
                        "usage.unusual",
                        workspace_id,
                        {
                            "target": finding.text,
                            "kind": finding.subject,
                            "subject_id": finding.subject_id,
                            **finding.detail,
                        },
                        dedupe=f"usage.unusual:{finding.subject}:{finding.subject_id}:{key}:{now:%Y-%m-%d}"[:120],
                    )

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + SWEEP_EVERY
                    self.sweep()
                self.run_once()
            except Exception:
                log.exception("webhook delivery pass failed; trying again")
            self._wake.wait(self.poll)
            self._wake.clear()

    def start(self) -> Deliverer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="poggio-webhooks", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None
