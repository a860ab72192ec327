"""Admins decide which apps and who may ask, in the portal: Settings > MCP Server's *App policy* form
and *Requests* (a member's request for an app, approved or denied by an admin), and *My apps*, the
page where a member follows their own requests and disconnects their apps.

As everywhere in Settings, an HTMX request is answered with the partial it changed, and the same
partials make up the full page that a browser without JavaScript gets."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, url_for
from flask_login import current_user, login_required
from htmx_flask import make_response

from poggio.errors import InvalidInput, NotFound
from poggio.identity import app_access, scopes
from poggio.records.audit import Actor
from poggio.storage.models import OAuthClient, OAuthGrant
from portal.access import client_ip, core, mcp_admin_required
from portal.forms import ActionForm, AppPolicyForm
from portal.htmx import request

bp = Blueprint("app_requests", __name__, url_prefix="/settings/mcp")
mine = Blueprint("my_apps", __name__, url_prefix="/my/apps")

STATE_LABELS = {
    "pending": "Waiting for approval",
    "approved": "Approved",
    "denied": "Denied",
    "revoked": "Disconnected",
    "expired": "Expired",
}


def _actor() -> Actor:
    return Actor(current_user._get_current_object(), ip=client_ip())


def _request_row(grant) -> dict:
    return {
        "g": grant,
        "identity": app_access.identity(grant.client),
        "packs": scopes.describe(scopes.parse(grant.packs)),
    }


def requests_context(workspace) -> dict:
    """The template context of the Requests section."""
    return {"requests": [_request_row(g) for g in app_access.requests(workspace)]}


def app_policy_form(workspace) -> AppPolicyForm:
    form = AppPolicyForm()
    if not form.is_submitted():
        rules = app_access.AppPolicy.of(workspace)
        form.apps.data, form.access.data = rules.apps, rules.access
        form.allowed.data = "\n".join(rules.allowed)
    return form


def policy_context(workspace) -> dict:
    return {"app_policy": app_access.AppPolicy.of(workspace)}


def _decide(workspace, grant_id: int, approve: bool):
    try:
        grant = app_access.request_of(workspace, grant_id)
    except NotFound:
        abort(404)
    message = None
    if ActionForm().validate_on_submit():
        try:
            app_access.decide(grant, approve, _actor())
        except InvalidInput as exc:
            message = exc.message
    if request.htmx:
        from portal.connected_apps import apps_context, client_form

        body = render_template(
            "settings/_requests.html", **requests_context(workspace), request_error=message
        ) + render_template("settings/_apps.html", **apps_context(workspace), client_form=client_form(), oob=True)
        return make_response(body, 409 if message else 200)
    if message:
        from portal.mcp_settings import render_page

        return render_page(workspace, 409, request_error=message)
    return redirect(url_for("mcp_settings.page") + "#app-requests")


@bp.post("/requests/<int:grant_id>/approve")
@mcp_admin_required
def approve(workspace, grant_id):
    return _decide(workspace, grant_id, True)


@bp.post("/requests/<int:grant_id>/deny")
@mcp_admin_required
def deny(workspace, grant_id):
    return _decide(workspace, grant_id, False)


@bp.post("/app-policy")
@mcp_admin_required
def set_app_policy(workspace):
    """Which apps may connect, and whether members may ask for them. Apps the new policy no longer
    admits are disconnected (said on the page)."""
    from portal.mcp_settings import render_page

    form = app_policy_form(workspace)
    if not form.validate_on_submit():
        return render_page(workspace, 422, app_policy_form=form)
    try:
        _, ended = app_access.set_app_policy(
            workspace,
            _actor(),
            apps=form.apps.data,
            allowed=(form.allowed.data or "").splitlines(),
            access=form.access.data,
        )
    except InvalidInput as exc:
        target = {"apps": form.apps, "app_access": form.access}.get(exc.field, form.allowed)
        target.errors = [exc.message]
        return render_page(workspace, 422, app_policy_form=form)
    return render_page(workspace, 200, app_policy_saved=True, app_policy_ended=ended)


# -- My apps: a member's own requests and apps ---------------------------------------------------------------
def _my_rows() -> list[dict]:
    user = current_user._get_current_object()
    query = (
        OAuthGrant.select(OAuthGrant, OAuthClient)
        .join(OAuthClient)
        .where(OAuthGrant.user == user.id)
        .order_by(OAuthGrant.created_at.desc(), OAuthGrant.id.desc())
        .limit(200)
    )
    return [
        {
            "g": g,
            "state": app_access.request_state(g),
            "identity": app_access.identity(g.client),
            "packs": scopes.describe(scopes.parse(g.packs)),
            "workspace": g.workspace,
        }
        for g in query
    ]


@mine.get("/")
@login_required
def page():
    return render_template("my_apps.html", rows=_my_rows(), labels=STATE_LABELS, form=ActionForm())


@mine.post("/<int:grant_id>/disconnect")
@login_required
def disconnect(grant_id):
    """A person ends an app they connected or asked for (their own grants only)."""
    grant = OAuthGrant.get_or_none((OAuthGrant.id == grant_id) & (OAuthGrant.user == current_user.id))
    if grant is None:
        abort(404)
    if ActionForm().validate_on_submit():
        core().oauth.revoke_grant(grant, _actor(), "disconnected by its requester")
    return redirect(url_for(".page"))
