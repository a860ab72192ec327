"""What an OAuth client may register, by dynamic registration (RFC 7591) or in a Client ID Metadata
Document: every field bounded, the redirect URIs held to RFC 8252 and OAuth 2.1, and the client's
``application_type`` (``web`` or ``native``) made to agree with its redirect URIs.

Registration is open to anyone, so nothing unbounded is stored: a field Poggio does not use is
dropped, every string has a length, every list a number of entries of a length, and control
characters are refused everywhere. A refusal is :class:`~poggio.errors.InvalidInput` naming the field
and the rule, which the portal answers as ``invalid_redirect_uri`` (redirect URIs) or
``invalid_client_metadata`` (the rest).

Redirect URIs (RFC 8252 for native apps, OAuth 2.1 for all):

- ``https`` with a host: web clients, and native apps' claimed https URLs;
- ``http`` to a loopback host (127.0.0.1, [::1], localhost): a native app's local listener, which
  picks its port when it runs, so the port is ignored when the URI is matched (RFC 8252 §7.3);
- a private-use scheme (``com.example.app:/callback``, ``cursor://…``): native apps (RFC 8252 §7.1);
- never: a fragment, credentials, control characters or spaces, plain ``http`` to another host,
  schemes a browser runs or reads locally (``javascript:``, ``data:``, ``file:``…), or a scheme the
  installation denies (``POGGIO_OAUTH_DENIED_REDIRECT_SCHEMES``).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from poggio.errors import InvalidInput

MAX_BODY_BYTES = 16 * 1024  # a registration request's body, or a metadata document
MAX_URI = 2000
APPLICATION_TYPES = ("web", "native")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# schemes that run script, read local data or name browser internals: never a redirect
NEVER_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "view-source"}
STRINGS = {  # field: most characters
    "client_id": MAX_URI,
    "client_name": 200,
    "client_uri": MAX_URI,
    "logo_uri": MAX_URI,
    "tos_uri": MAX_URI,
    "policy_uri": MAX_URI,
    "jwks_uri": MAX_URI,
    "software_id": 200,
    "software_version": 100,
    "scope": 1000,
    "token_endpoint_auth_method": 50,
    "application_type": 10,
}
LISTS = {  # field: (most entries, most characters of each)
    "redirect_uris": (10, MAX_URI),
    "contacts": (5, 320),
    "grant_types": (5, 100),
    "response_types": (5, 100),
}
MAX_JWKS = (10, 8 * 1024)  # a client's inline JSON Web Key Set: most keys, most bytes as JSON
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")  # control characters, space included, in a URI
_CONTROL_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(value: str) -> str:
    """``value`` quoted for an error description: shortened, and with ``?`` for what RFC 6749 keeps
    out of one (control characters, quotes, backslashes, anything beyond ASCII)."""
    short = value if len(value) <= 80 else value[:77] + "..."
    return "'" + "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in short) + "'"


def redirect_kind(uri: str, denied_schemes=(), field: str = "redirect_uris") -> str:
    """``https``, ``loopback`` or ``private`` (a private-use scheme) for a redirect URI a client may
    register; :class:`InvalidInput` naming the rule it breaks otherwise."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInput(field, "each redirect URI must be a non-empty string")
    if len(uri) > MAX_URI:
        raise InvalidInput(field, f"a redirect URI may have at most {MAX_URI:,} characters ({len(uri):,} sent)")
    if _CONTROL.search(uri):
        raise InvalidInput(field, f"{_shown(uri)} holds a control character or a space; redirect URIs must not")
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    if not _SCHEME.match(scheme):
        raise InvalidInput(field, f"{_shown(uri)} is not an absolute URI (it needs a scheme such as https:)")
    if "#" in uri:
        raise InvalidInput(field, f"{_shown(uri)} has a fragment; redirect URIs must not (OAuth 2.1)")
    if scheme in NEVER_SCHEMES:
        raise InvalidInput(
            field,
            f"{_shown(uri)}: '{scheme}:' URIs run script or read local data in a browser; they are never redirect URIs",
        )
    if scheme in {s.lower().rstrip(":") for s in denied_schemes}:
        raise InvalidInput(
            field,
            f"{_shown(uri)}: this installation refuses the '{scheme}:' scheme (POGGIO_OAUTH_DENIED_REDIRECT_SCHEMES)",
        )
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise InvalidInput(field, f"{_shown(uri)} is not a valid URI") from None
    if "@" in parts.netloc:
        raise InvalidInput(field, f"{_shown(uri)} carries credentials (user@host); redirect URIs must not")
    if scheme == "https":
        if not parts.hostname:
            raise InvalidInput(field, f"{_shown(uri)} has no host")
        return "https"
    if scheme == "http":
        if (parts.hostname or "") in LOOPBACK_HOSTS:
            return "loopback"
        raise InvalidInput(
            field,
            f"{_shown(uri)}: plain http is allowed only to a loopback address "
            "(127.0.0.1, [::1] or localhost, for an app on this computer); use https",
        )
    if not (parts.netloc or parts.path.strip("/")):
        raise InvalidInput(field, f"{_shown(uri)} has nothing after its scheme")
    return "private"


def check_redirect_uri(uri: str, field: str = "redirect_uris", denied_schemes=()) -> str:
    """``uri`` if a client may register it (see :func:`redirect_kind`)."""
    redirect_kind(uri, denied_schemes, field)
    return uri


def _loopback_parts(uri: str):
    parts = urlsplit(uri)
    if parts.scheme != "http" or (parts.hostname or "") not in LOOPBACK_HOSTS or "@" in parts.netloc:
        return None
    return parts.hostname, parts.path or "/", parts.query


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact match, except that a loopback ``http`` redirect URI matches on any port (RFC 8252 §7.3):
    the same host as registered (127.0.0.1 is not localhost), path and query, any port or none."""
    if presented == registered:
        return True
    if not isinstance(presented, str) or _CONTROL.search(presented) or "#" in presented:
        return False
    mine = _loopback_parts(registered)
    if mine is None:
        return False
    try:
        theirs = _loopback_parts(presented)
        if theirs is not None:
            urlsplit(presented).port  # noqa: B018 - a port that is not a number is no match
    except ValueError:
        return False
    return theirs == mine


def _check_text(field: str, value, most: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if len(value) > most:
        raise InvalidInput(field, f"at most {most:,} characters ({len(value):,} sent)")
    if _CONTROL_TEXT.search(value):
        raise InvalidInput(field, "holds a control character")
    return value


def _check_jwks(value) -> dict:
    keys, most = MAX_JWKS
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InvalidInput("jwks", "must be a JSON Web Key Set: an object with a list of keys")
    if len(value["keys"]) > keys:
        raise InvalidInput("jwks", f"at most {keys} keys ({len(value['keys']):,} sent)")
    size = len(json.dumps(value))
    if size > most:
        raise InvalidInput("jwks", f"at most {most // 1024} KB as JSON ({size:,} bytes sent)")
    return value


def clean_client_metadata(metadata: object, denied_schemes=()) -> tuple[dict, str | None]:
    """The fields Poggio keeps of a client's metadata, each within its bounds, with
    ``application_type`` settled; and the value the client sent for it when that was corrected
    (None otherwise). :class:`InvalidInput` names the first field out of bounds."""
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata", "the client metadata must be a JSON object")
    kept: dict = {}
    for field, most in STRINGS.items():
        if metadata.get(field) is not None:
            kept[field] = _check_text(field, metadata[field], most)
    for field, (entries, most) in LISTS.items():
        value = metadata.get(field)
        if value is None:
            continue
        if not isinstance(value, list):
            raise InvalidInput(field, "must be a list")
        if len(value) > entries:
            raise InvalidInput(field, f"at most {entries} entries ({len(value):,} sent)")
        if field != "redirect_uris":
            kept[field] = [_check_text(field, v, most) for v in value]
    if metadata.get("jwks") is not None:
        kept["jwks"] = _check_jwks(metadata["jwks"])
    uris = metadata.get("redirect_uris") or []
    if not isinstance(uris, list) or not uris:
        raise InvalidInput("redirect_uris", "at least one redirect URI is required")
    kinds = {redirect_kind(u, denied_schemes) for u in uris}
    kept["redirect_uris"] = list(uris)
    sent = kept.get("application_type")
    if sent is not None and sent not in APPLICATION_TYPES:
        raise InvalidInput("application_type", f"must be 'web' or 'native' ({_shown(sent)} sent)")
    # a loopback listener or a private-use scheme is an app on a person's computer (RFC 8252), whatever
    # it says; RFC 7591's default is web
    settled = "native" if kinds & {"loopback", "private"} else (sent or "web")
    kept["application_type"] = settled
    return kept, (sent if sent is not None and sent != settled else None)
