"""``private_key_jwt`` client authentication at the token endpoint (RFC 7523 §2.2, OpenID Connect
Core §9), for apps known by a Client ID Metadata Document that publishes public keys (``jwks_uri``
or ``jwks``): each token request carries a JWT the app signed, instead of a secret Poggio would
have to store. ChatGPT prefers it.

The assertion is Authlib's (:class:`JWTBearerClientAssertion`) with joserfc underneath; what this
module adds is where the keys come from, what is accepted, and where replays are caught:

- keys: the document's ``jwks``, or its ``jwks_uri`` fetched by the same strict fetcher as the
  document itself (:func:`portal.client_metadata.fetch_json`: https, public addresses, no
  redirects, a size cap), kept by its caching headers; an assertion naming a key id the kept set
  lacks fetches it again (the app rotated its key), at most once a minute;
- signatures by asymmetric algorithms only (a published ``oct`` key would let anyone sign);
- ``iss`` = ``sub`` = the client_id; ``aud`` the token endpoint or the issuer; ``exp`` required
  and at most :data:`MAX_LIFETIME` ahead;
- ``jti`` required, and kept in the database until the assertion expires
  (:meth:`poggio.identity.oauth.OAuthService.first_assertion`), so a replay is refused by every worker.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from poggio.storage.db import utcnow
from portal.access import core
from portal.client_metadata import MetadataError, fetch_json

METHOD = "private_key_jwt"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
MAX_LIFETIME = 300  # seconds an assertion may still be valid for when it arrives
LEEWAY = 30  # seconds of clock difference allowed
REFETCH_AFTER = dt.timedelta(minutes=1)  # an unknown key id fetches the key set again, at most this often
MAX_KEPT = 1000  # key sets kept per worker


class PublishedKeys:
    """The key sets apps publish at their ``jwks_uri``, per worker, by their caching headers."""

    def __init__(self):
        self._kept: dict[str, tuple[KeySet, dt.datetime, dt.datetime]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str, kid: str | None, allow_private: bool) -> KeySet:
        now = utcnow()
        with self._lock:
            kept = self._kept.get(uri)
        if kept is not None:
            keys, fresh_until, fetched_at = kept
            known = kid is None or any(k.kid == kid for k in keys.keys)
            if fresh_until > now and (known or now - fetched_at < REFETCH_AFTER):
                return keys
        try:
            document, fresh_until = fetch_json(uri, allow_private, what="the app's key set (jwks_uri)")
        except MetadataError as exc:
            raise InvalidClientError(description=f"The app's keys could not be read: {exc}.") from None
        keys = _key_set(document)
        with self._lock:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[uri] = (keys, fresh_until, now)
        return keys

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


published = PublishedKeys()


def _key_set(document) -> KeySet:
    try:
        keys = KeySet.import_key_set(document)
    except (JoseError, ValueError, TypeError, KeyError, AttributeError):
        raise InvalidClientError(description="The app's published keys are not a JSON Web Key Set.") from None
    if not keys.keys or any(k.key_type == "oct" for k in keys.keys):
        raise InvalidClientError(
            description="The app's published key set must hold public keys (RSA, EC or OKP), and no shared secret."
        )
    return keys


class PrivateKeyJWT(JWTBearerClientAssertion):
    """Authlib's client assertion as the ``private_key_jwt`` method of :mod:`portal.oauth`."""

    CLIENT_AUTH_METHOD = METHOD  # type: ignore[misc]  # Final in types-Authlib; Authlib asks subclasses to set it

    def __init__(self):
        super().__init__(validate_jti=True, leeway=LEEWAY)

    def get_audiences(self):
        issuer = core().settings.portal_public_url
        return [f"{issuer}/oauth/token", issuer]

    def __call__(self, query_client, request):
        data = request.form
        assertion = data.get("client_assertion")
        if data.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None  # another method's request
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidClientError(
                description="The client assertion names no client: its 'sub' must be the client_id."
            )
        if data.get("client_id") not in (None, client_id):
            raise InvalidClientError(description="The client assertion is for another client than client_id names.")
        client = query_client(client_id)
        if not client:
            raise InvalidClientError(description="The client does not exist on this server.")
        if client.auth_method != METHOD:
            raise InvalidClientError(
                description="This app does not authenticate with private_key_jwt: its "
                "metadata names token_endpoint_auth_method "
                f"{client.auth_method!r}."
            )
        keys = self._keys(client, headers.get("kid"))
        try:
            token = jwt.decode(assertion, keys, algorithms=ALGORITHMS)
        except JoseError as exc:
            raise InvalidClientError(
                description="The client assertion's signature does not verify with the keys "
                f"the app publishes ({exc.error})."
            ) from None
        self.verify_claims(token.claims)
        request.client = client
        return self.authenticate_client(client)

    @staticmethod
    def _keys(client, kid) -> KeySet:
        meta = client.meta
        if isinstance(meta.get("jwks"), dict):
            return _key_set(meta["jwks"])
        uri = meta.get("jwks_uri")
        if not isinstance(uri, str):
            raise InvalidClientError(description="The app publishes no keys ('jwks_uri' or 'jwks').")
        return published.get(uri, kid if isinstance(kid, str) else None, core().settings.oauth_metadata_allow_private)

    def verify_claims(self, claims):
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise InvalidClientError(description="The client assertion must carry 'exp', its expiry.")
        if exp > time.time() + MAX_LIFETIME + self.leeway:
            raise InvalidClientError(
                description=f"The client assertion is valid for too long: its 'exp' may be "
                f"at most {MAX_LIFETIME} seconds ahead."
            )
        super().verify_claims(claims)

    def validate_jti(self, claims, jti):
        if not isinstance(jti, str) or not jti or len(jti) > 500:
            raise InvalidClientError(
                description="The client assertion's 'jti' must be a string of at most 500 "
                "characters, new for every request."
            )
        expires = dt.datetime.fromtimestamp(claims["exp"] + self.leeway, dt.UTC).replace(tzinfo=None)
        if not core().oauth.first_assertion(claims["sub"], jti, expires):
            raise InvalidClientError(
                description="This client assertion was used before (its 'jti'): sign a new one for every request."
            )
        return True
