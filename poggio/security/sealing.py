"""Secrets the server must read back (to sign or to authenticate with), kept sealed at rest: encrypted
with AES-256-GCM (compact JWE, ``dir``) under a key derived from ``POGGIO_SECRET_KEY`` and the purpose
of the secret, so a copy of the database alone does not give them away, and one purpose's sealed
values cannot be read as another's."""

from __future__ import annotations

import hashlib
import hmac

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey


class Unsealable(ValueError):
    """A sealed value cannot be opened: it was sealed under another secret key (or altered)."""


def _key(secret_key: str, purpose: bytes) -> OctKey:
    return OctKey.import_key(hmac.new(purpose, secret_key.encode(), hashlib.sha256).digest())


def seal(plaintext: str, secret_key: str, purpose: bytes) -> str:
    return jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, plaintext.encode(), _key(secret_key, purpose))


def unseal(sealed: str, secret_key: str, purpose: bytes) -> str:
    try:
        opened = jwe.decrypt_compact(sealed, _key(secret_key, purpose)).plaintext
        if opened is None:  # never after a decryption that succeeded; not an empty secret either
            raise ValueError("nothing was sealed")
        return opened.decode()
    except (JoseError, ValueError) as exc:
        raise Unsealable(str(exc)) from None
