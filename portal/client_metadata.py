"""Client ID Metadata Documents: a ``client_id`` that is an https URL names a JSON document describing
the client (its name and redirect URIs), which the authorization server fetches.

Fetching a URL that anyone can type is a server-side request forgery risk, so the fetch is strict:
https only; the host's addresses are resolved first and must all be public (unless
``POGGIO_OAUTH_METADATA_ALLOW_PRIVATE`` is on) and the connection goes to the address that was
checked, so DNS cannot answer differently the second time; no redirects; at most ``MAX_BYTES`` read.
The document is cached by its HTTP caching headers, between a minute and a day.

Anyone signed in can name a URL, so a fetch may never hold the portal: the whole fetch (connection,
TLS, headers, body) has one deadline, ``DEADLINE_SECONDS``, checked on every read of the socket, each
read waiting at most ``READ_SECONDS``; at most ``MAX_CONCURRENT`` fetches run at once in a process
(one more is refused at once as busy, so the threads that serve pages stay free); and a failure is
remembered for ``FAILURE_SECONDS``, during which the URL is not fetched again.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import threading
import time
from collections import OrderedDict
from typing import TypeGuard
from urllib.parse import urlsplit

import httpcore
import httpx

from poggio.security.addresses import resolve_checked
from poggio.storage.db import utcnow

DEADLINE_SECONDS = 8.0  # the whole fetch, from connecting to the body's last byte
READ_SECONDS = 3.0  # any one connect, TLS step or read of the socket
MAX_BYTES = 16 * 1024  # the document's body
MAX_HEADER_BYTES = 16 * 1024  # the status line and headers, besides the body
MAX_CONCURRENT = 2  # fetches at once in one portal process (a gunicorn worker runs four threads)
FAILURE_SECONDS = 60.0  # a URL that failed is not fetched again for this long
MAX_FAILURES_KEPT = 1000
MAX_URL = 500  # an OAuth client_id's length (poggio.storage.models.OAuthClient)
MIN_CACHE = dt.timedelta(minutes=1)
MAX_CACHE = dt.timedelta(days=1)
DEFAULT_CACHE = dt.timedelta(hours=1)


class MetadataError(Exception):
    """The document could not be fetched or is not acceptable; the message says why, for a person."""


class _Budget:
    """What one fetch may still spend: time until its deadline, bytes until its cap."""

    def __init__(self, seconds: float, max_bytes: int):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.bytes_left = max_bytes

    def timeout(self, asked: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout(f"the whole fetch took longer than {self.seconds:g} s")
        return min(left, asked if asked is not None else left, READ_SECONDS)


class _BudgetStream(httpcore.NetworkStream):
    """A socket stream whose every read and write is held to the fetch's budget."""

    def __init__(self, inner: httpcore.NetworkStream, budget: _Budget):
        self.inner, self.budget = inner, budget

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self.inner.read(max_bytes, self.budget.timeout(timeout))
        self.budget.bytes_left -= len(data)
        if self.budget.bytes_left < 0:
            raise httpcore.ReadError("the answer is larger than a client metadata document may be")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.budget.timeout(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return _BudgetStream(
            self.inner.start_tls(ssl_context, server_hostname, self.budget.timeout(timeout)), self.budget
        )

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class _BudgetBackend(httpcore.NetworkBackend):
    def __init__(self, budget: _Budget):
        self.budget = budget
        self.inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self.inner.connect_tcp(host, port, self.budget.timeout(timeout), local_address, socket_options)
        return _BudgetStream(stream, self.budget)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover - https only
        raise httpcore.ConnectError("metadata documents are fetched over TCP only")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries are configured
        time.sleep(seconds)


class _Failures:
    """URLs whose fetch failed lately, with the reason: not fetched again until the entry expires."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, url: str) -> str | None:
        with self.lock:
            entry = self.entries.get(url)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self.entries[url]
                return None
            return entry[1]

    def put(self, url: str, reason: str) -> None:
        with self.lock:
            self.entries.pop(url, None)
            self.entries[url] = (time.monotonic() + FAILURE_SECONDS, reason)
            while len(self.entries) > MAX_FAILURES_KEPT:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


failures = _Failures()
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


def is_metadata_url(client_id: str | None) -> TypeGuard[str]:
    if not client_id or not client_id.startswith("https://"):
        return False
    parts = urlsplit(client_id)
    return bool(parts.hostname) and parts.path not in ("", "/")


def _resolve(host: str, port: int, allow_private: bool, seconds: float = READ_SECONDS) -> str:
    return resolve_checked(
        host,
        port,
        allow_private,
        what="the client's metadata URL",
        fetched="metadata documents",
        error=MetadataError,
        seconds=seconds,
    )


def _fresh_until(headers: httpx.Headers, now: dt.datetime) -> dt.datetime:
    control = headers.get("cache-control", "").lower()
    if "no-store" in control or "no-cache" in control:
        return now
    match = re.search(r"max-age=(\d+)", control)
    if match:
        age = dt.timedelta(seconds=int(match.group(1)))
    elif headers.get("expires"):
        try:
            expires = email.utils.parsedate_to_datetime(headers["expires"])
            age = expires.astimezone(dt.UTC).replace(tzinfo=None) - now
        except (TypeError, ValueError):
            age = DEFAULT_CACHE
    else:
        age = DEFAULT_CACHE
    return now + min(max(age, MIN_CACHE), MAX_CACHE)


def remember_failure(url: str, reason: str) -> None:
    """Put ``url`` aside for ``FAILURE_SECONDS``: its document was refused after it was fetched."""
    failures.put(url, reason)


def fetch_json(
    url: str, allow_private: bool = False, what: str = "the client's metadata document"
) -> tuple[dict, dt.datetime]:
    """The JSON object at ``url`` (https, with a path), fetched as strictly as the module says, and
    until when it may be reused; :class:`MetadataError` naming ``what`` otherwise. Client ID
    Metadata Documents and the JWKS their clients publish (``jwks_uri``) are both fetched here. A URL
    that failed lately fails again at once, with the same reason, without a fetch; at most
    ``len(_slots)`` fetches run at once in a process, so they never take every thread that serves pages."""
    if len(url) > MAX_URL:
        raise MetadataError(f"the URL of {what} may be at most {MAX_URL} characters ({len(url):,} sent)")
    known = failures.get(url)
    if known is not None:
        raise MetadataError(known)
    if not _slots.acquire(blocking=False):
        raise MetadataError("the portal is busy fetching other apps' metadata documents; try again in a minute")
    try:
        return _fetch(url, allow_private, what)
    except MetadataError as exc:
        failures.put(url, str(exc))
        raise
    finally:
        _slots.release()


def _fetch(url: str, allow_private: bool, what: str) -> tuple[dict, dt.datetime]:
    if not is_metadata_url(url):
        raise MetadataError(f"the URL of {what} must be an https URL with a path")
    parts = urlsplit(url)
    if parts.username or parts.password or parts.fragment:
        raise MetadataError(f"the URL of {what} must not carry credentials or a fragment")
    host, port = parts.hostname, parts.port or 443
    address = _resolve(host or "", port, allow_private, READ_SECONDS)
    target = f"https://{'[' + address + ']' if ':' in address else address}:{port}{parts.path}" + (
        f"?{parts.query}" if parts.query else ""
    )
    budget = _Budget(DEADLINE_SECONDS, MAX_BYTES + MAX_HEADER_BYTES)
    timeouts = {"connect": READ_SECONDS, "read": READ_SECONDS, "write": READ_SECONDS, "pool": READ_SECONDS}
    try:
        with httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=1, retries=0, network_backend=_BudgetBackend(budget)
        ) as pool:
            with pool.stream(
                "GET",
                target,
                headers=[("Host", parts.netloc), ("Accept", "application/json")],
                extensions={"sni_hostname": host, "timeout": timeouts},
            ) as response:
                if 300 <= response.status < 400:
                    raise MetadataError(f"the URL of {what} answered with a redirect, which is not followed")
                if response.status != 200:
                    raise MetadataError(f"the URL of {what} answered HTTP {response.status}")
                body = b""
                for chunk in response.iter_stream():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise MetadataError(f"{what} is larger than {MAX_BYTES // 1024} KB")
                    budget.timeout(None)  # the deadline holds between chunks too
                headers = httpx.Headers(response.headers)
    except httpcore.TimeoutException:
        raise MetadataError(f"the URL of {what} did not answer in full within {DEADLINE_SECONDS:g} seconds") from None
    except httpcore.ReadError as exc:
        if budget.bytes_left < 0:
            raise MetadataError(f"{what} is larger than {MAX_BYTES // 1024} KB") from None
        raise MetadataError(f"{what} could not be fetched ({type(exc).__name__})") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
        raise MetadataError(f"{what} could not be fetched ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep for the parser: not a document either
        raise MetadataError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise MetadataError(f"{what} is not a JSON object")
    return document, _fresh_until(headers, utcnow())


def fetch_client_metadata(url: str, allow_private: bool = False) -> tuple[dict, dt.datetime]:
    """The document at ``url`` and until when it may be reused; :class:`MetadataError` otherwise
    (and the URL put aside, as for a failed fetch)."""
    if not is_metadata_url(url):
        raise MetadataError("a metadata client_id must be an https URL with a path")
    document, fresh_until = fetch_json(url, allow_private)
    try:
        _check_document(url, document)
    except MetadataError as exc:
        remember_failure(url, str(exc))
        raise
    return document, fresh_until


def _check_document(url: str, document: dict) -> None:
    if document.get("client_id") != url:
        raise MetadataError("the client's metadata document names another client_id than its own URL")
    if not isinstance(document.get("redirect_uris"), list) or not document["redirect_uris"]:
        raise MetadataError("the client's metadata document lists no redirect_uris")
    method = document.get("token_endpoint_auth_method", "none")
    if method == "private_key_jwt":  # the client signs its token requests with a key it publishes
        if not (isinstance(document.get("jwks"), dict) or is_metadata_url(document.get("jwks_uri"))):
            raise MetadataError(
                "a metadata document client using private_key_jwt must publish its keys: "
                "'jwks_uri' (an https URL) or 'jwks'"
            )
    elif method != "none":
        raise MetadataError(
            "a metadata document client must be public (token_endpoint_auth_method 'none') "
            "or sign its requests (private_key_jwt)"
        )
