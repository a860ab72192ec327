"""Client ID Metadata Documents: a ``client_id`` that is an https URL names a JSON document describing
the client (its name and redirect URIs), which the authorization server fetches.

Fetching a URL that anyone can type is a server-side request forgery risk, so the fetch is strict:
https only; the host's addresses are resolved first and must all be public (unless
``POGGIO_OAUTH_METADATA_ALLOW_PRIVATE`` is on) and the connection goes to the address that was
checked, so DNS cannot answer differently the second time; no redirects; a short timeout; at most
``MAX_BYTES`` read. The document is cached by its HTTP caching headers, between a minute and a day.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from urllib.parse import urlsplit

import httpx

from poggio.addresses import resolve_checked
from poggio.db import utcnow

TIMEOUT_SECONDS = 5.0
MAX_BYTES = 64 * 1024
MIN_CACHE = dt.timedelta(minutes=1)
MAX_CACHE = dt.timedelta(days=1)
DEFAULT_CACHE = dt.timedelta(hours=1)


class MetadataError(Exception):
    """The document could not be fetched or is not acceptable; the message says why, for a person."""


def is_metadata_url(client_id: str | None) -> bool:
    if not client_id or not client_id.startswith("https://"):
        return False
    parts = urlsplit(client_id)
    return bool(parts.hostname) and parts.path not in ("", "/")


def _resolve(host: str, port: int, allow_private: bool) -> str:
    return resolve_checked(host, port, allow_private, what="the client's metadata URL",
                           fetched="metadata documents", error=MetadataError)


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


def fetch_json(url: str, allow_private: bool = False,
               what: str = "the client's metadata document") -> tuple[dict, dt.datetime]:
    """The JSON object at ``url`` (https, with a path), fetched as strictly as the module says, and
    until when it may be reused; :class:`MetadataError` naming ``what`` otherwise. Client ID
    Metadata Documents and the JWKS their clients publish (``jwks_uri``) are both fetched here."""
    if not is_metadata_url(url):
        raise MetadataError(f"the URL of {what} must be an https URL with a path")
    parts = urlsplit(url)
    if parts.username or parts.password or parts.fragment:
        raise MetadataError(f"the URL of {what} must not carry credentials or a fragment")
    host, port = parts.hostname, parts.port or 443
    address = _resolve(host, port, allow_private)
    target = f"https://{'[' + address + ']' if ':' in address else address}:{port}{parts.path}" + (
        f"?{parts.query}" if parts.query else "")
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
            with http.stream("GET", target, headers={"Host": parts.netloc, "Accept": "application/json"},
                             extensions={"sni_hostname": host}) as response:
                if response.is_redirect:
                    raise MetadataError(f"the URL of {what} answered with a redirect, which is not followed")
                if response.status_code != 200:
                    raise MetadataError(f"the URL of {what} answered HTTP {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise MetadataError(f"{what} is larger than {MAX_BYTES // 1024} KB")
                headers = response.headers
    except httpx.HTTPError as exc:
        raise MetadataError(f"{what} could not be fetched ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise MetadataError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise MetadataError(f"{what} is not a JSON object")
    return document, _fresh_until(headers, utcnow())


def fetch_client_metadata(url: str, allow_private: bool = False) -> tuple[dict, dt.datetime]:
    """The document at ``url`` and until when it may be reused; :class:`MetadataError` otherwise."""
    if not is_metadata_url(url):
        raise MetadataError("a metadata client_id must be an https URL with a path")
    document, fresh_until = fetch_json(url, allow_private)
    if document.get("client_id") != url:
        raise MetadataError("the client's metadata document names another client_id than its own URL")
    if not isinstance(document.get("redirect_uris"), list) or not document["redirect_uris"]:
        raise MetadataError("the client's metadata document lists no redirect_uris")
    method = document.get("token_endpoint_auth_method", "none")
    if method == "private_key_jwt":  # the client signs its token requests with a key it publishes
        if not (isinstance(document.get("jwks"), dict) or is_metadata_url(document.get("jwks_uri"))):
            raise MetadataError("a metadata document client using private_key_jwt must publish its keys: "
                                "'jwks_uri' (an https URL) or 'jwks'")
    elif method != "none":
        raise MetadataError("a metadata document client must be public (token_endpoint_auth_method 'none') "
                            "or sign its requests (private_key_jwt)")
    return document, fresh_until
