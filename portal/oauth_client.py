"""An OAuth client as Authlib sees it: an :class:`~poggio.storage.models.OAuthClient` row, its registered
redirect URIs, authentication method, grant types and scope (the authorization server is
:mod:`portal.oauth`; the ID-JAG grant, :mod:`portal.id_jag`)."""

from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import ClientMixin

from poggio.identity.client_metadata import redirect_uri_matches
from poggio.identity.oauth import scope_of
from poggio.storage.models import OAuthClient
from portal.access import core


class Client(ClientMixin):
    """An :class:`OAuthClient` row as Authlib's client."""

    def __init__(self, row: OAuthClient):
        self.row = row
        self.meta = json.loads(row.metadata or "{}")

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.meta.get("redirect_uris") or [])

    @property
    def auth_method(self) -> str:
        return self.meta.get("token_endpoint_auth_method") or "client_secret_basic"

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope):
        known = core().registry.names
        if not scope:
            return scope_of(self.row.packs if self.row.packs else known)
        return " ".join(s for s in scope.split() if s.partition(":")[0] in known or s == "offline_access")

    def check_redirect_uri(self, redirect_uri):
        # exact match, as OAuth 2.1 asks; a loopback listener's port aside (RFC 8252 §7.3)
        return any(redirect_uri_matches(registered, redirect_uri) for registered in self.redirect_uris)

    def check_client_secret(self, client_secret):
        return core().oauth.check_secret(self.row, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if self.row.kind == "confidential" and method in ("client_secret_basic", "client_secret_post"):
            return True  # a client an admin created holds a secret: either way of sending it
        return method == self.auth_method

    def check_response_type(self, response_type):
        return response_type == "code" and self.row.kind != "confidential"

    def check_grant_type(self, grant_type):
        if self.row.kind == "confidential":
            return grant_type in (self.meta.get("grant_types") or ["client_credentials"])
        return grant_type in ("authorization_code", "refresh_token")
