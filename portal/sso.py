"""Single sign-on through a workspace's OpenID Connect provider, and the admins' Settings > Sign-in page.

- ``GET /sign-in/sso/<slug>`` starts it for a workspace (a link an admin can share);
  ``POST /sign-in/sso`` finds the workspaces whose allowed domains take the e-mail typed on the
  sign-in page and offers "Sign in with <provider>" for each.
- The flow is the authorization code flow with PKCE (S256), ``state`` and a ``nonce``, the provider
  found by discovery (``/.well-known/openid-configuration``); the code comes back to
  ``GET /sign-in/oidc/callback`` (one redirect URI for every workspace: the state says which).
- The ID token is verified here (joserfc): signature by a key of the provider's JWKS (asymmetric
  algorithms only), ``iss`` the discovered issuer, ``aud`` the client ID (and ``azp`` when there are
  several audiences), ``exp`` and ``iat``, and the ``nonce`` this sign-in sent.

What is stored and decided (users created just in time, the role mapping, "require single sign-on")
is :mod:`poggio.identity.sso`'s.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from wtforms import BooleanField, PasswordField, StringField, TextAreaField
from wtforms.validators import Length

from poggio.errors import InvalidInput
from poggio.identity import sso
from poggio.identity.sso import SsoError, SsoProvider
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.models import Workspace
from portal.access import admin_required, client_ip, core
from portal.forms import ActionForm, SignInForm
from portal.signin import SessionUser, open_session, safe_next

bp = Blueprint("sso", __name__)
CALLBACK = "/sign-in/oidc/callback"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY = 60  # seconds of clock difference allowed
TIMEOUT = 8.0  # seconds for each request to the provider
KEEP = 300  # seconds a discovery document or key set is kept per process
PENDING_MAX_AGE = 15 * 60  # seconds a sign-in may take at the provider


def redirect_uri() -> str:
    """The one redirect URI to register at the provider."""
    return core().settings.portal_public_url + CALLBACK


# -- talking to the provider ------------------------------------------------------------------
_kept: dict[str, tuple[float, object]] = {}
_kept_lock = threading.Lock()


def _get_json(url: str, what: str, issuer: str) -> dict:
    try:
        response = httpx.get(url, timeout=TIMEOUT, follow_redirects=False, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SsoError(
            f"The identity provider at {issuer} cannot be reached right now ({type(exc).__name__}). "
            "Try again later; if it goes on, tell your administrator.",
            f"{what} unreachable: {type(exc).__name__}",
        ) from None
    if response.status_code != 200:
        raise SsoError(
            f"The identity provider at {issuer} answered HTTP {response.status_code} for its {what} "
            f"({url}). Check the issuer URL in Settings > Sign-in.",
            f"{what}: HTTP {response.status_code}",
        )
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SsoError(
            f"The identity provider's {what} at {url} is not a JSON object: is {issuer} the issuer URL "
            "of an OpenID Connect provider?",
            f"{what} not JSON",
        )
    return document


def _cached(key: str, make):
    now = time.monotonic()
    with _kept_lock:
        found = _kept.get(key)
    if found is not None and found[0] > now:
        return found[1]
    value = make()
    with _kept_lock:
        if len(_kept) > 500:
            _kept.clear()
        _kept[key] = (now + KEEP, value)
    return value


def forget(issuer: str | None = None) -> None:
    with _kept_lock:
        for key in [k for k in _kept if issuer is None or issuer in k]:
            del _kept[key]


def discover(issuer: str, fresh: bool = False) -> dict:
    """The provider's OpenID Connect discovery document, checked: it names this issuer and the
    endpoints the flow needs. SsoError with a reason a person understands otherwise."""

    def fetch():
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = _get_json(url, "discovery document", issuer)
        if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise SsoError(
                f"The discovery document at {url} names another issuer ({document.get('issuer')!r}); "
                "enter the issuer exactly as the provider spells it.",
                "discovery names another issuer",
            )
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            raise SsoError(f"The provider's discovery document lacks {', '.join(missing)}.", "discovery incomplete")
        return document

    if fresh:
        forget(issuer)
    return _cached(f"discovery {issuer}", fetch)


def provider_keys(document: dict, kid: str | None = None) -> KeySet:
    uri = document["jwks_uri"]

    def fetch():
        try:
            return KeySet.import_key_set(_get_json(uri, "key set (jwks_uri)", document["issuer"]))  # type: ignore[arg-type]  # checked by joserfc: errors below
        except (JoseError, ValueError, TypeError, KeyError):
            raise SsoError("The identity provider's published keys are not a JSON Web Key Set.", "bad jwks") from None

    keys = _cached(f"jwks {uri}", fetch)
    if kid and not any(k.kid == kid for k in keys.keys):  # the provider rotated its keys
        forget(uri)
        keys = _cached(f"jwks {uri}", fetch)
    return keys


def verify_id_token(
    id_token: str, document: dict, client_id: str, nonce: str, keys: KeySet | None = None, now: float | None = None
) -> dict:
    """The ID token's claims once its signature, issuer, audience, expiry and nonce hold; SsoError otherwise."""
    try:
        from joserfc.jws import extract_compact

        kid = extract_compact(id_token.encode()).protected.get("kid")
    except (JoseError, ValueError, AttributeError):
        raise SsoError(
            "The identity provider sent an ID token that is not a signed JWT.", "id token malformed"
        ) from None
    keys = keys if keys is not None else provider_keys(document, kid)
    algorithms = [a for a in document.get("id_token_signing_alg_values_supported") or ["RS256"] if a in ALGORITHMS]
    try:
        claims = jwt.decode(id_token, keys, algorithms=algorithms or ["RS256"]).claims
    except (JoseError, ValueError) as exc:
        raise SsoError(
            "The ID token's signature does not verify with the identity provider's published keys.",
            f"id token signature: {getattr(exc, 'error', type(exc).__name__)}",
        ) from None
    now = time.time() if now is None else now
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != document["issuer"]:
        raise SsoError(
            "The ID token was issued by another provider than this workspace's.", f"id token iss {claims.get('iss')!r}"
        )
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
        raise SsoError(
            "The ID token was issued for another application than Poggio (its audience is not Poggio's client ID).",
            f"id token aud {audience!r}",
        )
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or exp + LEEWAY < now:
        raise SsoError("The ID token has expired: sign in again (and check this server's clock).", "id token expired")
    if not isinstance(iat, (int, float)) or iat - LEEWAY > now:
        raise SsoError("The ID token was issued in the future: check this server's clock.", "id token iat")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise SsoError(
            "The ID token does not belong to this sign-in (its nonce differs): start again.", "id token nonce mismatch"
        )
    return claims


def exchange_code(provider: SsoProvider, document: dict, code: str, verifier: str) -> dict:
    """The provider's token response for ``code``, authenticating with the client secret."""
    secret = sso.client_secret(provider, core().settings.secret_key)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri(), "code_verifier": verifier}
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth = None
    if "client_secret_basic" in methods:
        auth = httpx.BasicAuth(provider.client_id, secret)
    else:
        data.update(client_id=provider.client_id, client_secret=secret)
    try:
        response = httpx.post(
            document["token_endpoint"], data=data, auth=auth, timeout=TIMEOUT, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError as exc:
        raise SsoError(
            "The identity provider cannot be reached right now to finish the sign-in. Try again later.",
            f"token endpoint unreachable: {type(exc).__name__}",
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        if error == "invalid_client" or response.status_code == 401:
            raise SsoError(
                "The identity provider refused Poggio's client credentials (invalid_client): the client "
                "ID or client secret in Settings > Sign-in is wrong. Tell your administrator.",
                "token endpoint: invalid_client",
            )
        raise SsoError(
            f"The identity provider refused to finish the sign-in ({error or response.status_code}). Start again.",
            f"token endpoint: {error or response.status_code}",
        )
    if not isinstance(body.get("id_token"), str):
        raise SsoError(
            "The identity provider sent no ID token: is the 'openid' scope allowed for Poggio?", "no id_token"
        )
    return body


def userinfo(document: dict, access_token: str | None) -> dict:
    if not document.get("userinfo_endpoint") or not access_token:
        return {}
    try:
        response = httpx.get(
            document["userinfo_endpoint"],
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        body = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


# -- the sign-in ------------------------------------------------------------------------------
def _failed(provider: SsoProvider | None, workspace, error: SsoError, status: int = 502):
    audit.record(
        "sso.sign_in_failed",
        Actor(label=f"sso: {provider.label}" if provider else "sso", ip=client_ip()),
        workspace,
        target=provider.issuer if provider else "",
        reason=error.reason,
    )
    return render_template("sign_in.html", form=SignInForm(), error=error.message), status


@bp.get("/sign-in/sso/<slug>")
def start(slug: str):
    workspace = Workspace.get_or_none(Workspace.slug == slug[:63])
    provider = sso.provider_of(workspace) if workspace is not None else None
    if provider is None or workspace is None:
        return render_template(
            "sign_in.html", form=SignInForm(), error=f"No single sign-on is set up for the workspace “{slug[:63]}”."
        ), 404
    try:
        document = discover(provider.issuer)
        sso.client_secret(provider, core().settings.secret_key)  # misconfigured: say so before leaving
    except SsoError as error:
        return _failed(provider, workspace, error)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    session["sso"] = {
        "slug": workspace.slug,
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": safe_next(request.args.get("next")),
        "at": int(time.time()),
    }
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri(),
        "scope": provider.scopes or sso.DEFAULT_SCOPES,
        "state": state,
        "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    endpoint = document["authorization_endpoint"]
    return redirect(endpoint + ("&" if "?" in endpoint else "?") + urlencode(params))


@bp.post("/sign-in/sso")
def by_email():
    """The sign-in page's "Sign in with single sign-on": the providers for the e-mail's domain."""
    form = SignInForm()
    email = (request.form.get("email") or "").strip().lower()[:254]
    choices = sso.providers_for_email(email) if "@" in email else []
    if not choices:
        domain = email.rpartition("@")[2] or "that address"
        return render_template(
            "sign_in.html", form=form, error=f"No single sign-on is set up for {domain}. Sign in with your password."
        ), 404
    return render_template("sign_in.html", form=form, sso_choices=choices)


@bp.get(CALLBACK)
def callback():
    pending = session.pop("sso", None)
    state = request.args.get("state", "")
    if (
        not isinstance(pending, dict)
        or not state
        or not secrets.compare_digest(str(pending.get("state")), state)
        or time.time() - pending.get("at", 0) > PENDING_MAX_AGE
    ):
        return render_template(
            "sign_in.html",
            form=SignInForm(),
            error="This sign-in did not start here or took too long. Start again from the sign-in page.",
        ), 400
    workspace = Workspace.get_or_none(Workspace.slug == pending["slug"])
    provider = sso.provider_of(workspace) if workspace is not None else None
    if provider is None or workspace is None:
        return render_template(
            "sign_in.html", form=SignInForm(), error="Single sign-on was removed from this workspace meanwhile."
        ), 400
    if request.args.get("error"):
        described = request.args.get("error_description") or request.args["error"]
        return _failed(
            provider,
            workspace,
            SsoError(
                f"The identity provider did not sign you in: {described[:300]}",
                f"provider error: {request.args['error'][:100]}",
            ),
            403,
        )
    try:
        document = discover(provider.issuer)
        tokens = exchange_code(provider, document, request.args.get("code", ""), pending["verifier"])
        claims = verify_id_token(tokens["id_token"], document, provider.client_id, pending["nonce"])
        if "email" not in claims or provider.role_claim not in claims:
            extra = userinfo(document, tokens.get("access_token"))
            if extra.get("sub") == claims.get("sub"):
                claims = {**extra, **claims}
        signed = sso.sign_in(provider, claims, client_ip())
    except SsoError as error:
        return _failed(
            provider, workspace, error, 403 if error.reason.startswith(("domain", "no group", "user", "email")) else 502
        )
    user = SessionUser.get_by_id(signed.user.id)
    open_session(user)
    session["workspace_id"] = workspace.id
    audit.record(
        "user.signed_in",
        Actor(user, ip=client_ip()),
        workspace,
        target=user.email,
        method="sso",
        provider=provider.issuer,
        role=signed.role,
    )
    return redirect(pending.get("next") or url_for("views.home"))


# -- Settings > Sign-in -----------------------------------------------------------------------
class SsoForm(FlaskForm):
    issuer = StringField(
        "Issuer URL",
        validators=[Length(max=500)],
        description="e.g. https://acme.okta.com or https://login.microsoftonline.com/TENANT/v2.0",
    )
    client_id = StringField("Client ID", validators=[Length(max=500)])
    client_secret = PasswordField(
        "Client secret",
        validators=[Length(max=1000)],
        description="Stored encrypted. Leave empty to keep the current one.",
    )
    scopes = StringField("Scopes", validators=[Length(max=500)], default=sso.DEFAULT_SCOPES)
    domains = TextAreaField(
        "Allowed e-mail domains",
        validators=[Length(max=2000)],
        description="Comma- or line-separated, e.g. acme.example. Empty: any.",
    )
    role_claim = StringField("Role claim", validators=[Length(max=100)], default="groups")
    admin_group = StringField("Value that makes an admin", validators=[Length(max=200)])
    member_group = StringField(
        "Value that makes a member",
        validators=[Length(max=200)],
        description="Empty: everyone the provider signs in is at least a member.",
    )
    require = BooleanField("Require single sign-on (password sign-in off, except break-glass admins)")
    id_jag = BooleanField("Trust identity assertions (ID-JAG) from this provider for AI apps")


@bp.route("/settings/sign-in", methods=["GET", "POST"])
@admin_required
def settings_page(workspace):
    provider = sso.provider_of(workspace)
    form = SsoForm(obj=None)
    if request.method == "GET":
        _fill(form, provider)
    status, saved = 200, False
    if form.validate_on_submit():
        from flask_login import current_user

        field = None
        try:
            issuer = sso.check_issuer(form.issuer.data)
            field = "issuer"
            discover(issuer, fresh=True)
            field = None
            provider = sso.configure(
                workspace,
                Actor(current_user._get_current_object(), ip=client_ip()),
                issuer=issuer,
                client_id=form.client_id.data or "",
                secret_key=core().settings.secret_key,
                client_secret=form.client_secret.data or None,
                domains=[form.domains.data or ""],
                scopes=form.scopes.data or sso.DEFAULT_SCOPES,
                role_claim=form.role_claim.data or "groups",
                admin_group=form.admin_group.data or "",
                member_group=form.member_group.data or "",
                require=form.require.data,
                id_jag=form.id_jag.data,
            )
            saved = True
        except InvalidInput as exc:
            getattr(form, exc.field if hasattr(form, exc.field) else "issuer").errors.append(exc.message)
            status = 422
        except SsoError as exc:
            getattr(form, field or "issuer").errors.append(exc.message)
            status = 422
    elif request.method == "POST":
        status = 400
    return _settings(workspace, form, provider, saved=saved), status


def _fill(form, provider) -> None:
    if provider is None:
        return
    form.issuer.data, form.client_id.data, form.scopes.data = provider.issuer, provider.client_id, provider.scopes
    form.domains.data = ", ".join(provider.domain_list)
    form.role_claim.data, form.admin_group.data = provider.role_claim, provider.admin_group or ""
    form.member_group.data = provider.member_group or ""
    form.require.data, form.id_jag.data = provider.require_sso, provider.trust_id_jag


def _settings(workspace, form, provider, **extra):
    from poggio.identity.scim import ScimToken

    tokens = list(
        ScimToken.select()
        .where((ScimToken.workspace == workspace) & ScimToken.revoked_at.is_null())
        .order_by(ScimToken.id.desc())
    )
    return render_template(
        "settings/sign_in.html",
        form=form,
        provider=provider,
        redirect_uri=redirect_uri(),
        scim_url=core().settings.portal_public_url + "/scim/v2",
        scim_tokens=tokens,
        action_form=ActionForm(),
        start_url=core().settings.portal_public_url + url_for("sso.start", slug=workspace.slug),
        break_glass=core().settings.sso_break_glass,
        **extra,
    )


@bp.post("/settings/sign-in/scim-tokens")
@admin_required
def create_scim_token(workspace):
    """A new SCIM token, shown once on the page."""
    from flask_login import current_user

    from poggio.identity import scim

    form = ActionForm()
    if not form.validate_on_submit():
        return render_template("error.html", code=400, message="Your form expired. Reload the page."), 400
    name = (request.form.get("name") or "SCIM").strip()[:100] or "SCIM"
    token = scim.create_token(
        workspace, Actor(current_user._get_current_object(), ip=client_ip()), name, core().settings.token_pepper
    )
    provider = sso.provider_of(workspace)
    shown = SsoForm(formdata=None)
    _fill(shown, provider)
    return _settings(workspace, shown, provider, new_scim_token=token)


@bp.post("/settings/sign-in/scim-tokens/<int:token_id>/revoke")
@admin_required
def revoke_scim_token(workspace, token_id: int):
    from flask_login import current_user

    from poggio.identity import scim

    form = ActionForm()
    row = scim.ScimToken.get_or_none((scim.ScimToken.id == token_id) & (scim.ScimToken.workspace == workspace))
    if row is None:
        return render_template("error.html", code=404, message="This page does not exist."), 404
    if form.validate_on_submit():
        scim.revoke_token(row, Actor(current_user._get_current_object(), ip=client_ip()))
    return redirect(url_for("sso.settings_page"))


# kept here so portal/auth.py only needs a one-line hook
def password_refused(user) -> str | None:
    """The message for a correct password that may not be used (single sign-on required), or None."""
    if sso.password_allowed(user, core().settings.sso_break_glass):
        return None
    return "Your workspace requires single sign-on: use “Sign in with single sign-on” below."


@bp.post("/settings/mcp/tokens/<int:token_id>/reviewed")
@admin_required
def token_reviewed(workspace, token_id: int):
    """An admin looked at an API token whose creator was deprovisioned: the flag goes."""
    from flask_login import current_user

    from poggio.identity import scim

    form = ActionForm()
    if form.validate_on_submit() and not scim.clear_review(
        workspace, token_id, Actor(current_user._get_current_object(), ip=client_ip())
    ):
        return render_template("error.html", code=404, message="This page does not exist."), 404
    return redirect(url_for("mcp_settings.page"))
