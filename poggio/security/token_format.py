"""The format of every secret Poggio hands out, and its digest: a leaf that imports nothing of Poggio.

A token is ``pgo_`` + 27 random base62 characters (160.7 bits) + a 6-character base62 CRC32 of them,
so secret scanners can match ``pgo_[A-Za-z0-9]{30,}`` and a mistyped token is refused before any
database work. OAuth access and refresh tokens and client secrets share the format under prefixes of
their own. Only a digest is stored: SHA-256, or HMAC-SHA-256 when a pepper is configured. The API-token
service (:mod:`poggio.identity.tokens`), the OAuth service (:mod:`poggio.identity.oauth`), SCIM tokens and the log
redaction (:mod:`poggio.records.redaction`) all take these from here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

PREFIX = "pgo_"
# The other secrets Poggio hands out share the format under prefixes of their own, so a leaked one says
# what it is: OAuth access tokens, OAuth refresh tokens, OAuth client secrets.
ACCESS_PREFIX, REFRESH_PREFIX, CLIENT_SECRET_PREFIX = "pgoa_", "pgor_", "pgos_"
BODY_LENGTH = 27
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
TOKEN_PATTERN = re.compile(r"pgo[ars]?_[A-Za-z0-9]{30,}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY = re.compile(rf"[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}")


def _base62(number: int, width: int) -> str:
    out = []
    while number:
        number, rem = divmod(number, 62)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate(prefix: str = PREFIX) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}{body}{_checksum(body)}"


def well_formed(token: str, prefix: str = PREFIX) -> bool:
    """Shape and checksum; costs no database work."""
    if not token.startswith(prefix) or len(token) != len(prefix) + BODY_LENGTH + CHECKSUM_LENGTH:
        return False
    rest = token[len(prefix) :]
    if not _BODY.fullmatch(rest):
        return False
    return hmac.compare_digest(_checksum(rest[:BODY_LENGTH]), rest[BODY_LENGTH:])


def digest(token: str, pepper: str | None = None) -> str:
    if pepper:
        return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(token.encode()).hexdigest()
