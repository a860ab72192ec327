"""The portal as OAuth 2.1 authorization server for the MCP server (Authlib).

Endpoints: RFC 8414 metadata at ``/.well-known/oauth-authorization-server``; ``/oauth/authorize``
(authorization code + PKCE S256, through the portal's own sign-in and a consent page that is a plain
HTML form); ``/oauth/token`` (authorization_code, refresh_token with rotation, client_credentials);
``/oauth/register`` (RFC 7591, open and rate-limited); ``/oauth/revoke`` (RFC 7009). A ``client_id``
that is an https URL is a Client ID Metadata Document, fetched by :mod:`portal.client_metadata`.

What is stored and checked lives in :mod:`poggio.identity.oauth`; this module adapts it to Authlib's grants.
Tokens are bound to the MCP server's URL (RFC 8707 ``resource``): a ``resource`` naming anything else
is refused with ``invalid_target``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TypeGuard, cast
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from poggio.errors import InvalidInput
from poggio.identity import app_access, scopes
from poggio.identity.client_metadata import MAX_BODY_BYTES
from poggio.identity.oauth import (
    JWT_BEARER,
    OAuthService,
    PresentedRefresh,
    RefreshReused,
    lifetime_choices,
    lifetime_days,
    metadata_url_trusted,
    normalise_resource,
    packs_of_scope,
    scope_of,
    widened,
)
from poggio.identity.scopes import READ, WRITE, supported_oauth_scopes
from poggio.identity.switches import clean_narrowing
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import utcnow
from poggio.storage.models import Membership, OAuthClient, OAuthCode, OAuthGrant, User, Workspace
from portal import client_auth
from portal.access import client_ip, core, mcp_resource
from portal.client_metadata import MetadataError, fetch_client_metadata, is_metadata_url, remember_failure
from portal.forms import ActionForm
from portal.id_jag import ID_JAG_PROFILE, IdJagGrant
from portal.oauth_client import Client

log = logging.getLogger(__name__)
bp = Blueprint("oauth", __name__)
CONSENT_MAX_AGE = 30 * 60  # seconds a consent page may stay open before its approval is refused
REUSED = "This refresh token was already used. For safety the app's access has been revoked; connect it again."


class InvalidTargetError(OAuth2Error):
    """RFC 8707: the ``resource`` is not this authorization server's MCP server."""

    error = "invalid_target"


class InvalidRedirectURIError(OAuth2Error):
    """RFC 7591 §3.2.2."""

    error = "invalid_redirect_uri"


def service() -> OAuthService:
    return core().oauth


def issuer() -> str:
    return core().settings.portal_public_url


# -- Authlib's view of our rows ---------------------------------------------------------------
class Code:
    """An :class:`OAuthCode` row as Authlib's authorization code."""

    def __init__(self, row: OAuthCode):
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self):
        return self.row.redirect_uri

    def get_scope(self):
        return scope_of(self.row.packs)


class Refresh:
    """A refresh token presented (not spent yet: :func:`_save_token` spends it), for Authlib's refresh grant."""

    def __init__(self, found: PresentedRefresh):
        self.found = found
        self.row = found.row

    def check_client(self, client: Client):
        return self.row.grant.client_id == client.row.id

    def get_scope(self):
        return scope_of(self.row.grant.packs)


@dataclass(frozen=True)
class Approval:
    """What the admin approved on the consent page: Authlib's ``grant_user``."""

    user: User
    workspace: Workspace
    packs: dict[str, str]  # {pack: "read" | "write"}
    days: int | None
    adds_to: OAuthGrant | None = None  # the app's connected grant in the workspace, which gains ``packs``
    pending: bool = False  # a member's request: an admin approves or denies it later
    tools: str | None = None  # "customise": narrowed to these tools of its packs (poggio.identity.switches)


def _check_resource(req) -> None:
    """RFC 8707: a ``resource`` must name this server's MCP endpoint (it may be left out)."""
    wanted = req.payload.data.get("resource") if hasattr(req, "payload") else None
    if wanted is None:
        wanted = request.values.get("resource")
    if wanted and normalise_resource(wanted) != mcp_resource():
        raise InvalidTargetError(
            f"This authorization server issues tokens for {mcp_resource()} only, not for {wanted}."
        )


class S256CodeChallenge(CodeChallenge):
    """PKCE required of every client, with S256 only (OAuth 2.1, MCP authorization)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' with 'code_challenge_method=S256'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


# private_key_jwt first: a request carrying a client assertion is judged by it, and refused with its reason
CLIENT_AUTH_METHODS = [client_auth.METHOD, "client_secret_basic", "client_secret_post", "none"]


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        try:
            _check_resource(self.request)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code, request):
        approval: Approval = request.user
        payload = request.payload.data
        service().issue_code(
            code=code,
            client=request.client.row,
            user=approval.user,
            workspace=approval.workspace,
            packs=dict(approval.packs),
            redirect_uri=request.payload.redirect_uri or request.client.redirect_uris[0],
            resource=payload.get("resource") or mcp_resource(),
            code_challenge=payload["code_challenge"],
            code_challenge_method=payload["code_challenge_method"],
            grant_days=approval.days,
            actor=Actor(approval.user, ip=client_ip()),
            adds_to=approval.adds_to,
            pending=approval.pending,
            tools=approval.tools,
        )

    def query_authorization_code(self, code, client):
        row = service().find_code(code, client.row)
        return Code(row) if row is not None else None

    def delete_authorization_code(self, authorization_code):
        """Nothing to do: the code was spent, atomically, when its grant was created."""

    def authenticate_user(self, authorization_code):
        return User.get_or_none(User.id == authorization_code.row.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh token works once

    def authenticate_refresh_token(self, refresh_token):
        try:
            found = service().find_refresh(refresh_token, cast(Client, self.request.client).row)
        except RefreshReused:
            raise InvalidGrantError(REUSED) from None
        return Refresh(found) if found is not None else None

    def _validate_token_scope(self, token):
        try:
            super()._validate_token_scope(token)  # type: ignore[misc]  # Authlib's, left out of its stubs
        except InvalidScopeError:
            raise InvalidScopeError(
                f"This app was granted '{token.get_scope()}'; a refresh may ask for no more. "
                "To get more, send the person through authorization again."
            ) from None

    def authenticate_user(self, refresh_token):
        return refresh_token.row.grant.user_id or True  # a grant outlives its approver's account

    def revoke_old_credential(self, refresh_token):
        """Nothing to do: the refresh token was spent when its new pair was issued (:func:`_save_token`)."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return None  # ownership is checked in revoke_token, which the endpoint calls either way

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        self.check_params(request, client)
        service().revoke_presented(request.form["token"], client.row, Actor(label=client.row.name, ip=client_ip()))
        return 200, {}, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]

    def revoke_token(self, token, request):  # pragma: no cover - create_endpoint_response does it
        raise NotImplementedError


class ClientClaims(ClientMetadataClaims):
    """Authlib's checks of RFC 7591 metadata, but for redirect URIs, which :mod:`poggio.identity.client_metadata`
    checks (Authlib's want a host, refusing a native app's ``com.example.app:/callback``); and
    ``application_type`` (OpenID Connect registration, which MCP clients send) is kept."""

    REGISTERED_CLAIMS = [*ClientMetadataClaims.REGISTERED_CLAIMS, "application_type"]

    def validate_redirect_uris(self):
        """Checked by poggio.identity.client_metadata before Authlib sees the request."""


class Registration(ClientRegistrationEndpoint):
    """RFC 7591, open to anyone (rate-limited per client IP in the view)."""

    def __init__(self, server=None, claims_classes=None):
        super().__init__(server, claims_classes or [ClientClaims])

    def authenticate_token(self, request):
        return True

    def get_server_metadata(self):
        return metadata()

    def generate_client_id(self, request):
        return None  # chosen by poggio.identity.oauth when the client is saved

    def generate_client_secret(self, request):
        return None

    def save_client(self, client_info, client_metadata, request):
        if "client_credentials" in (client_metadata.get("grant_types") or []):
            raise InvalidClientMetadataError(
                "client_credentials clients are created by a workspace admin in Settings > MCP Server, not registered"
            )
        method = client_metadata.get("token_endpoint_auth_method") or "client_secret_basic"
        if method not in ("none", "client_secret_basic", "client_secret_post"):
            raise InvalidClientMetadataError(f"token_endpoint_auth_method {method!r} is not supported")
        try:
            issued = service().register(client_metadata, ip=client_ip())
        except InvalidInput as exc:
            raise registration_error(exc) from None
        return issued

    def generate_client_registration_info(self, client, request):
        """The identifiers chosen when the client was saved (the secret, if any, shown this once), and
        the metadata as kept (``application_type`` as settled)."""
        kept = json.loads(client.client.metadata)
        return {
            "client_id": client.client.client_id,
            "client_secret": client.secret,
            "redirect_uris": kept["redirect_uris"],
            "application_type": kept["application_type"],
        }


def registration_error(exc: InvalidInput) -> InvalidRedirectURIError | InvalidClientMetadataError:
    """RFC 7591 §3.2.2: ``invalid_redirect_uri`` for a redirect URI, ``invalid_client_metadata`` else;
    the description names the field and the rule."""
    error = InvalidRedirectURIError if exc.field == "redirect_uris" else InvalidClientMetadataError
    return error(f"{exc.field}: {exc.message}")


def _bearer_placeholder(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
    """Authlib's token generator. The tokens themselves are made by :meth:`OAuthService.issue_tokens`
    in :func:`_save_token`, which knows the grant they belong to; this only carries Authlib's decision
    whether a refresh token is due."""
    return {"token_type": "Bearer", "_refresh": include_refresh_token}


def _save_token(token: dict, req) -> None:
    """Create (or find) the grant the token request stands for, then issue its tokens into ``token``."""
    _check_resource(req)
    svc = service()
    if req.payload.grant_type == "authorization_code":
        code = req.authorization_code.row
        if code.resource != mcp_resource() and req.payload.data.get("resource") is None:
            raise InvalidTargetError("The code was issued for another resource.")
        grant = svc.grant_from_code(code)
        if grant is None:
            raise InvalidGrantError(
                "This code was already used, or the connected app it adds to was disconnected "
                "meanwhile; authorize again."
            )
    elif req.payload.grant_type == "refresh_token":
        # spent only now, once every check passed: a refused refresh leaves the token usable
        try:
            token.update(svc.rotate(req.refresh_token.found, req.client.row))
        except RefreshReused:
            raise InvalidGrantError(REUSED) from None
        token.pop("_refresh", None)
        return
    else:  # client_credentials
        grant = svc.standing_grant(req.client.row)
        if grant is None:
            raise InvalidGrantError(
                "This client has no active grant: it was revoked, or it reached the maximum "
                "lifetime its workspace's token policy sets. Create a new client."
            )
        if grant.resource != mcp_resource():  # created before the MCP URL changed: follow it
            grant.resource = mcp_resource()
            grant.save(only=["resource"])
    refresh = token.pop("_refresh", False)
    token.update(svc.issue_tokens(grant, refresh=refresh))


def _query_client(client_id):
    if untrusted(client_id):
        raise InvalidClientError(
            status_code=401,
            description=(
                "This app's metadata document is not among those this installation allows "
                "(POGGIO_OAUTH_TRUSTED_CLIENT_METADATA)."
            ),
        )
    row = service().client(client_id)
    return Client(row) if row is not None else None


class PoggioAuthorizationServer(AuthorizationServer):
    """Authlib's server, with RFC 9207's ``iss`` in every authorization response: every redirect
    back to the app (the code, and every error: access_denied, invalid_scope, ...) names the
    issuer, so an app that talks to several authorization servers knows whose answer it holds
    (a mix-up attack hands it another's). The token and registration endpoints never redirect;
    the sign-in redirect is Flask-Login's, not an authorization response, and is left alone."""

    def handle_response(self, status_code, payload, headers):
        response = super().handle_response(status_code, payload, headers)
        if 300 <= status_code < 400 and response.location:
            response.location = add_params_to_uri(response.location, {"iss": issuer()})
        return response


authorization = PoggioAuthorizationServer()


def init_app(app) -> None:
    authorization.init_app(app, query_client=_query_client, save_token=_save_token)
    authorization.register_token_generator("default", _bearer_placeholder)  # type: ignore[arg-type]  # any callable (Authlib's docs)
    authorization.register_client_auth_method(client_auth.METHOD, client_auth.PrivateKeyJWT())
    authorization.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    authorization.register_grant(RefreshTokenGrant)
    authorization.register_grant(ClientCredentialsGrant)
    authorization.register_grant(IdJagGrant)
    authorization.register_endpoint(Revocation)
    authorization.register_endpoint(Registration)  # type: ignore[arg-type]  # an endpoint, not one in types-Authlib
    settings = app.extensions["poggio"].settings
    storage = storage_from_string(settings.redis_url) if settings.redis_url else MemoryStorage()
    app.extensions["poggio.registrations"] = (
        MovingWindowRateLimiter(storage),
        parse(settings.oauth_registration_limit),
    )
    app.register_blueprint(bp)


def metadata() -> dict:
    base = issuer()
    scopes = supported_oauth_scopes(core().registry.names)
    registration = (
        {"registration_endpoint": f"{base}/oauth/register"} if core().settings.oauth_dynamic_registration else {}
    )
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        **registration,
        "revocation_endpoint": f"{base}/oauth/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", JWT_BEARER],
        "authorization_grant_profiles_supported": [ID_JAG_PROFILE],  # Enterprise-Managed Authorization
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": client_auth.ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": client_auth.ALGORITHMS,
        "scopes_supported": scopes,
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "service_documentation": f"{base}/",
    }


# -- endpoints --------------------------------------------------------------------------------
@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata():
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _json_error(status: int, error: str, description: str) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/oauth/token")
def token():
    return authorization.create_token_response()


@bp.post("/oauth/revoke")
def revoke():
    return authorization.create_endpoint_response(Revocation.ENDPOINT_NAME)


@bp.post("/oauth/register")
def register():
    if not core().settings.oauth_dynamic_registration:
        return _json_error(
            404,
            "not_found",
            "This server does not take dynamic client registrations. Identify "
            "the app by a Client ID Metadata Document instead: an https URL, "
            "serving the app's metadata, as its client_id.",
        )
    limiter, limit = current_app.extensions["poggio.registrations"]
    if not limiter.hit(limit, f"oauth:register:{client_ip() or '-'}"):
        return _json_error(429, "too_many_requests", "Too many client registrations from this address; try later.")
    if not request.is_json:
        return _json_error(
            400,
            "invalid_client_metadata",
            "Send the client metadata as a JSON object (Content-Type: application/json).",
        )
    if (request.content_length or 0) > MAX_BODY_BYTES or len(request.get_data()) > MAX_BODY_BYTES:
        return _json_error(
            400, "invalid_client_metadata", f"The client metadata may be at most {MAX_BODY_BYTES // 1024} KB of JSON."
        )
    try:  # read here (and kept for Authlib): werkzeug lets a body nested too deep raise RecursionError
        body = request.get_json(silent=True, cache=True)
    except RecursionError:
        return _json_error(
            400, "invalid_client_metadata", "The client metadata is not valid JSON (or is nested too deep to read)."
        )
    try:
        service().clean_metadata(body)
    except InvalidInput as exc:
        service().refuse_registration(exc, body, label="dynamic registration", ip=client_ip())
        error = registration_error(exc)
        return _json_error(400, error.error, error.description)
    response = authorization.create_endpoint_response(Registration.ENDPOINT_NAME)
    if response.status_code == 201:  # a public client has no secret: leave the member out, not null
        body = {k: v for k, v in response.get_json().items() if v is not None}
        response.set_data(json.dumps(body))
    return response


def untrusted(client_id: str | None) -> TypeGuard[str]:
    """A Client ID Metadata Document client that ``POGGIO_OAUTH_TRUSTED_CLIENT_METADATA`` does not allow."""
    return is_metadata_url(client_id) and not metadata_url_trusted(
        client_id, core().settings.oauth_trusted_client_metadata
    )


def _load_client_for_authorize(client_id: str | None) -> str | None:
    """Make sure a Client ID Metadata Document client is known and fresh; returns an error message."""
    if not is_metadata_url(client_id):
        return None
    settings = core().settings
    row = OAuthClient.get_or_none(OAuthClient.client_id == client_id)
    if row is not None and row.metadata_expires_at and row.metadata_expires_at > utcnow():
        return None
    try:
        document, fresh_until = fetch_client_metadata(client_id, allow_private=settings.oauth_metadata_allow_private)
    except MetadataError as exc:
        return str(exc)
    try:
        service().remember_metadata_client(client_id, document, fresh_until)
    except InvalidInput as exc:
        reason = f"{exc.field}: {exc.message}"
        remember_failure(client_id, reason)  # not fetched, nor put on record, again for a while
        service().refuse_registration(
            exc, document, label="client metadata document", ip=client_ip(), client_id=client_id
        )
        return reason
    return None


def _consent_workspaces(user) -> list[Workspace]:
    """The MCP-entitled workspaces where ``user`` may approve an app (an admin) or request one (a member
    where the app policy lets members ask); each with ``.mode``, ``approve`` or ``request``."""
    found = []
    for m in (
        Membership.select(Membership, Workspace)
        .join(Workspace)
        .where((Membership.user == user.id) & (Workspace.mcp_enabled == True))  # noqa: E712
        .order_by(Workspace.name)
    ):
        mode = app_access.AppPolicy.of(m.workspace).may_connect(m.role)
        if mode is not None:
            m.workspace.mode = mode  # type: ignore[attr-defined]  # the consent page's, on these rows only
            found.append(m.workspace)
    return found


def _sealed_request(user_id: int) -> list:
    """What a consent form is sealed to: its viewer and the exact authorization request it showed."""
    return [user_id, request.query_string.decode("latin-1")]


def _sealer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="oauth-consent")


def _seal(user_id: int) -> str:
    return _sealer().dumps(_sealed_request(user_id))


def _seal_matches(value: str | None, user_id: int) -> bool:
    try:
        data = _sealer().loads(value or "", max_age=CONSENT_MAX_AGE)
    except BadSignature:
        return False
    return data == _sealed_request(user_id)


def _error_page(status: int, title: str, message: str):
    return render_template("oauth/error.html", title=title, message=message), status


def _consent_csp(response, redirect_uri: str | None):
    """The consent form posts to the portal, which redirects to the app: browsers hold that redirect
    to the form-action directive, so the app's origin is added to it for this page alone."""
    origin = ""
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        # a native app's private-use scheme is allowed as a scheme (com.example.app:), the rest by origin
        origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else f" {parts.scheme}:"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"frame-ancestors 'none'; form-action 'self'{origin}; base-uri 'none'; object-src 'none'"
    )
    return response


@bp.route("/oauth/authorize", methods=["GET", "POST"])
@login_required
def authorize():
    user = current_user._get_current_object()
    client_id = request.args.get("client_id")
    if untrusted(client_id):  # refused before its document is fetched
        workspaces = _consent_workspaces(user)
        audit.record(
            "oauth.client_refused",
            Actor(user, ip=client_ip()),
            workspaces[0] if workspaces else None,
            target=client_id[:200],
            client_id=client_id,
            reason="not in POGGIO_OAUTH_TRUSTED_CLIENT_METADATA",
        )
        return _error_page(
            403,
            "This app is not allowed here",
            f"The app {client_id} is not among the apps this installation allows to connect by "
            "their metadata document. Ask the administrator of this server to add it to "
            "POGGIO_OAUTH_TRUSTED_CLIENT_METADATA if it should.",
        )
    problem = _load_client_for_authorize(client_id)
    if problem:
        return _error_page(400, "This app could not be identified", problem)
    try:
        grant = authorization.get_consent_grant(end_user=user)
    except ValueError:  # authlib refuses to build an error whose description quotes a control character
        return _error_page(400, "This sign-in link is not valid", "A parameter holds characters OAuth does not allow.")
    except OAuth2Error as refused:
        if refused.redirect_uri:  # a known client and a checked redirect URI: the app hears of it
            return authorization.handle_error_response(None, refused)  # type: ignore[arg-type]  # Authlib takes None
        return _error_page(400, "This sign-in link is not valid", refused.description or refused.error or "")
    client: Client = grant.client
    redirect_uri = grant.request.payload.redirect_uri or client.get_default_redirect_uri()
    known = set(core().registry.names)
    try:
        asked = packs_of_scope(grant.request.payload.scope, known)
    except InvalidInput as exc:
        return authorization.handle_error_response(None, _redirect_error("invalid_scope", exc.message, redirect_uri))  # type: ignore[arg-type]  # as above
    eligible = _consent_workspaces(user)
    # the app policy decides which apps: a workspace that does not list this app is not offered
    workspaces = [w for w in eligible if app_access.AppPolicy.of(w).allows(client.row)]
    if eligible and not workspaces:  # nowhere to connect it: the app hears why, the admins see it
        actor = Actor(user, ip=client_ip())
        message = [app_access.refuse(w, client.row, actor) for w in eligible][0]
        return authorization.handle_error_response(None, _redirect_error("access_denied", message, redirect_uri))  # type: ignore[arg-type]  # as above
    form = ActionForm()

    if request.method == "POST":
        if not form.validate_on_submit() or not _seal_matches(request.form.get("seal"), user.id):
            return _error_page(
                400,
                "This approval form is no longer valid",
                "The approval did not match the request it was shown for, or it expired. Start again from the app.",
            )
        actor = Actor(user, ip=client_ip())
        chosen = next((w for w in workspaces if str(w.id) == request.form.get("workspace")), None)
        if request.form.get("decision") != "approve" or not workspaces:
            # on record where the workspace's admins look: the one chosen, else the user's first
            where = chosen or (
                workspaces[0]
                if workspaces
                else Membership.select(Membership.workspace)
                .where(Membership.user == user.id)
                .order_by(Membership.id)
                .first()
            )
            audit.record(
                "oauth.denied",
                actor,
                getattr(where, "workspace_id", None) or where,
                target=client.row.name,
                client_id=client.row.client_id,
            )
            return authorization.create_authorization_response(grant_user=None, grant=grant)
        writes = set(request.form.getlist("write")) & {p for p, level in asked.items() if level == WRITE}
        # write includes read: a ticked "may change" reads too
        packs = {p: WRITE if p in writes else READ for p in (set(request.form.getlist("packs")) | writes) & set(asked)}
        # the app connected to this workspace already: the approval adds to that grant (step-up); a
        # member's request never widens a live grant, it waits for an admin as a grant of its own
        requesting = chosen is not None and chosen.mode == "request"  # type: ignore[attr-defined]  # as above
        adds_to = None if requesting else service().connected_grant(client.row, chosen)
        days, error = None, None
        if chosen is None:
            error = "Choose a workspace."
        elif not packs and adds_to is None:
            error = "Choose at least one tool pack."
        elif adds_to is None:
            try:  # the chosen workspace's token policy caps how long access may last
                days = lifetime_days(request.form.get("lifetime", "90"), chosen)
            except InvalidInput as exc:
                error = exc.message
        tools = None
        if not error and chosen is not None and request.form.getlist("tools"):  # "customise": only the tools ticked
            within = packs if adds_to is None else scopes.parse(widened(adds_to.packs, scopes.format_levels(packs)))
            try:
                tools = clean_narrowing(request.form.getlist("tools"), core().registry, within)
            except InvalidInput as exc:
                error = exc.message
        if error or chosen is None:  # (chosen is None: an error)
            return _consent_csp(
                Response(
                    _render_consent(client, redirect_uri, workspaces, asked, error=error, chosen=chosen, packs=packs),
                    status=422,
                ),
                redirect_uri,
            )
        approval = Approval(user, chosen, packs, days, adds_to, pending=requesting, tools=tools)
        return authorization.create_authorization_response(grant_user=approval, grant=grant)

    return _consent_csp(Response(_render_consent(client, redirect_uri, workspaces, asked)), redirect_uri)


def _redirect_error(error: str, description: str, redirect_uri: str | None) -> OAuth2Error:
    exc = OAuth2Error(description=description, redirect_uri=redirect_uri)
    exc.error = error
    exc.state = request.args.get("state")
    return exc


def _shown_destination(redirect_uri: str | None) -> str:
    """Where the consent page says the app is sent back to: the host and port, or for a native app's
    private-use scheme (``com.example.app:/callback``) the scheme and what follows it."""
    parts = urlsplit(redirect_uri or "")
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def _render_consent(client: Client, redirect_uri, workspaces, asked, error=None, chosen=None, packs=None) -> str:
    registry = core().registry
    shown = chosen or (workspaces[0] if workspaces else None)
    lifetimes = lifetime_choices(shown)
    # the app is connected to this workspace already: what it has is shown as granted, what it asks
    # for beyond that is the addition the admin approves
    existing = service().connected_grant(client.row, shown)
    granted = scopes.parse(existing.packs) or {} if existing is not None else {}
    return render_template(
        "oauth/consent.html",
        client=client.row,
        kind=client.row.kind,
        redirect_host=_shown_destination(redirect_uri),
        workspaces=workspaces,
        chosen=chosen or (workspaces[0] if workspaces else None),
        packs=[
            {
                "name": name,
                "title": registry.packs[name].info.title,
                "read": name in (packs if packs is not None else asked),
                "write_asked": asked[name] == WRITE,
                # write is never ticked for the admin: apps ask for every scope the metadata lists
                "write": packs is not None and packs.get(name) == WRITE,
                "granted": granted.get(name),
            }
            for name in sorted(asked)
            if name in registry.packs
            and not (granted.get(name) == WRITE or (granted.get(name) == READ and asked[name] == READ))
        ],
        already=[
            {"name": name, "title": registry.packs[name].info.title if name in registry.packs else name, "level": level}
            for name, level in sorted(granted.items())
        ],
        existing=existing,
        tool_choices=[
            {"name": t.name, "title": t.title, "pack": t.pack, "read_only": t.read_only}
            for t in sorted(registry.tools(), key=lambda t: (t.pack, t.name))
            if t.pack in asked or t.pack in granted
        ],
        tools_ticked=set(request.form.getlist("tools")) if request.method == "POST" else set(),
        lifetimes=lifetimes,
        default_lifetime="90" if "90" in dict(lifetimes) else (lifetimes[-1][0] if lifetimes else None),
        policy_note=(
            f"{shown.name}'s token policy allows at most {shown.max_lifetime_days} days."
            if shown is not None and shown.max_lifetime_days
            else None
        ),
        seal=_seal(current_user.id),
        error=error,
        form=ActionForm(),
        product=core().settings.product_name,
        deny_only=not workspaces,
        identity=app_access.identity(client.row),
        request_only=bool(workspaces) and all(w.mode == "request" for w in workspaces),
    )
