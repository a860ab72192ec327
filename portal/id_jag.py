"""The jwt-bearer grant with an ID-JAG (Enterprise-Managed Authorization, SEP-990;
draft-ietf-oauth-identity-assertion-authz-grant) at the portal's token endpoint.

A confidential client an admin provisioned for the grant (``--grant jwt-bearer``) authenticates
with its secret and presents ``assertion``: a JWT of ``typ`` ``oauth-id-jag+jwt`` that the
workspace's identity provider signed. It is honoured when:

- the client's workspace trusts the assertion's ``iss`` for ID-JAGs (Settings > Sign-in, or
  ``poggio workspace sso … --id-jag``), and the signature verifies with a key of that issuer's JWKS
  (found by discovery), by an asymmetric algorithm;
- ``aud`` is Poggio's issuer, ``resource`` the MCP server's URL, ``client_id`` the authenticated client;
- ``exp`` is present, not past, and at most :data:`MAX_LIFETIME` ahead; ``jti`` was never seen
  (kept until the assertion expires, in the database: every portal worker agrees);
- the subject is an active user of the workspace (:func:`poggio.identity.sso.user_for_assertion`).

Anything else is ``invalid_grant`` with a reason a person understands, and an audit line. The
answer is an access token bound to the MCP server, and no refresh token: the app presents a fresh
ID-JAG when it expires, so the identity provider stays in control.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import cast

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, UnauthorizedClientError
from flask import Blueprint
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from poggio.identity import id_jag, sso
from poggio.identity.oauth import JWT_BEARER, normalise_resource
from poggio.identity.sso import SsoError, SsoProvider
from poggio.records import audit
from poggio.records.audit import Actor
from portal.access import client_ip, core, mcp_resource
from portal.oauth_client import Client
from portal.sso import ALGORITHMS, discover, provider_keys

bp = Blueprint("id_jag", __name__)
ID_JAG_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"
TYP = "oauth-id-jag+jwt"
MAX_LIFETIME = 600  # seconds an ID-JAG may still be valid for when it arrives
LEEWAY = 30


@bp.app_template_global()
def managed_grant(grant_id: int):
    """The employee and issuer of a connected app the identity provider made (Connected apps), or None."""
    return id_jag.managed([grant_id]).get(grant_id)


class IdJagGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = JWT_BEARER
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self):
        client = cast(Client, self.authenticate_token_endpoint_client())
        if client.row.kind != "confidential" or not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                "This client may not use the jwt-bearer grant: an admin creates clients "
                "for it with `poggio oauth client create … --grant jwt-bearer`."
            )
        self.request.client = client
        if not self.request.form.get("assertion"):
            raise InvalidRequestError("Send the ID-JAG as 'assertion'.")

    def create_token_response(self):
        client = cast(Client, self.request.client).row
        try:
            grant = self._grant(client, self.request.form["assertion"], mcp_resource())
        except id_jag.Refused as refused:
            audit.record(
                "oauth.id_jag_refused",
                Actor(label=client.name, ip=client_ip()),
                client.workspace_id,
                target=client.name,
                client_id=client.client_id,
                reason=refused.message,
            )
            raise InvalidGrantError(refused.message) from None
        return 200, core().oauth.issue_tokens(grant, refresh=False), self.TOKEN_RESPONSE_HEADER

    def _grant(self, client, assertion: str, mcp_url: str):
        wanted = self.request.form.get("resource")
        if wanted and normalise_resource(wanted) != mcp_url:
            raise id_jag.Refused(f"This authorization server issues tokens for {mcp_url} only, not for {wanted}.")
        try:
            header = extract_compact(assertion.encode()).protected
        except (JoseError, ValueError, AttributeError):
            raise id_jag.Refused("The assertion is not a signed JWT.") from None
        if header.get("typ") != TYP:
            raise id_jag.Refused(f"The assertion is not an ID-JAG: its 'typ' header must be {TYP!r}.")
        issuer = _unverified_claim(assertion, "iss")
        provider = SsoProvider.get_or_none(
            (SsoProvider.workspace == client.workspace_id) & (SsoProvider.trust_id_jag == True)  # noqa: E712
        )
        if provider is None or not isinstance(issuer, str) or issuer.rstrip("/") != provider.issuer.rstrip("/"):
            raise id_jag.Refused(
                f"The assertion's issuer {issuer!r} is not trusted for ID-JAGs by this client's "
                "workspace (an admin turns it on in Settings > Sign-in)."
            )
        try:
            document = discover(provider.issuer)
            keys = provider_keys(document, header.get("kid"))
        except SsoError as exc:
            raise id_jag.Refused(f"The identity provider's keys could not be read: {exc.message}") from None
        try:
            claims = jwt.decode(assertion, keys, algorithms=ALGORITHMS).claims
        except (JoseError, ValueError):
            raise id_jag.Refused(
                "The assertion's signature does not verify with the identity provider's published keys."
            ) from None
        now = time.time()
        if claims.get("iss") != document["issuer"]:
            raise id_jag.Refused("The assertion's issuer does not match the identity provider's discovery document.")
        audience = claims.get("aud")
        poggio = core().settings.portal_public_url
        if poggio not in (audience if isinstance(audience, list) else [audience]):
            raise id_jag.Refused(f"The assertion is for another authorization server: its 'aud' must be {poggio}.")
        if not isinstance(claims.get("resource"), str) or normalise_resource(claims["resource"]) != mcp_url:
            raise id_jag.Refused(f"The assertion is for another resource: its 'resource' must be {mcp_url}.")
        if claims.get("client_id") != client.client_id:
            raise id_jag.Refused("The assertion was issued to another client than the one presenting it.")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise id_jag.Refused("The assertion must carry 'exp', its expiry.")
        if exp + LEEWAY < now:
            raise id_jag.Refused("The assertion has expired: ask the identity provider for a new one.")
        if exp > now + MAX_LIFETIME + LEEWAY:
            raise id_jag.Refused(
                f"The assertion is valid for too long: its 'exp' may be at most {MAX_LIFETIME} seconds ahead."
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 500:
            raise id_jag.Refused("The assertion must carry a 'jti', new for every assertion.")
        expires = dt.datetime.fromtimestamp(exp + LEEWAY, dt.UTC).replace(tzinfo=None)
        if not core().oauth.first_assertion(f"id-jag {provider.issuer}", jti, expires):
            raise id_jag.Refused(
                "This assertion was used before (its 'jti'): ask the identity provider for a new "
                "one for every token request."
            )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise id_jag.Refused("The assertion names no subject ('sub').")
        workspace = provider.workspace
        if not workspace.mcp_enabled:
            raise id_jag.Refused("This workspace does not have the MCP server entitlement.")
        user, role = sso.user_for_assertion(workspace, subject, claims.get("email"), provider.domain_list)
        return id_jag.grant_for(client, user, role, provider.issuer, mcp_url, client_ip())


def _unverified_claim(assertion: str, name: str):
    """A claim of the assertion before its signature is checked: only to choose whose keys check it."""
    import json

    try:
        return json.loads(extract_compact(assertion.encode()).payload).get(name)
    except (JoseError, ValueError, AttributeError):
        return None
