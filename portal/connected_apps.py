"""Settings > MCP Server, OAuth side: the connected apps (grants) with their activity, and the
workspace's OAuth clients for ``client_credentials``: create (secret shown once) and revoke.

As for API tokens, every change is an HTMX request answered with the partial it changed, and the same
partials make up the full page (:mod:`portal.mcp_settings`), which a browser without JavaScript gets."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, url_for
from flask_login import current_user
from htmx_flask import make_response

from poggio.errors import InvalidInput, NotFound
from poggio.identity import app_access, scopes
from poggio.records.audit import Actor
from poggio.records.usage_report import by_tool, daily
from poggio.storage.db import utcnow
from poggio.storage.models import GrantUsage
from portal.access import client_ip, core, mcp_admin_required
from portal.activity import render_activity
from portal.charts import activity_bars
from portal.forms import ActionForm, OAuthClientForm
from portal.htmx import request

bp = Blueprint("connected_apps", __name__, url_prefix="/settings/mcp")


def _actor() -> Actor:
    return Actor(current_user._get_current_object(), ip=client_ip())


def grant_status(grant, now=None) -> str:
    now = now or utcnow()
    if grant.approval == "denied":
        return "denied"
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return "pending" if grant.approval == "pending" else "active"


def _app_row(grant, series=None) -> dict:
    if series is None:
        series = daily([grant.id], usage=GrantUsage)[grant.id]
    return {
        "g": grant,
        "status": grant_status(grant),
        "chart": activity_bars(series),
        "packs": scopes.describe(scopes.parse(grant.packs)),
        "identity": app_access.identity(grant.client),
    }


def apps_context(workspace) -> dict:
    """The template context of the connected apps and OAuth clients sections."""
    service = core().oauth
    grants = service.grants(workspace)
    series = daily([g.id for g in grants], usage=GrantUsage)
    return {"apps": [_app_row(g, series[g.id]) for g in grants], "clients": service.clients(workspace)}


def client_form() -> OAuthClientForm:
    from portal.mcp_settings import pack_choices

    form = OAuthClientForm()
    form.offer(pack_choices())
    return form


def _grant(workspace, grant_id: int):
    try:
        return core().oauth.grant(workspace, grant_id)
    except NotFound:
        abort(404)


@bp.post("/apps/<int:grant_id>/revoke")
@mcp_admin_required
def revoke_app(workspace, grant_id):
    grant = _grant(workspace, grant_id)
    if ActionForm().validate_on_submit():
        core().oauth.revoke_grant(grant, _actor(), "revoked by an admin")
    if request.htmx:
        return render_template("settings/_app_row.html", row=_app_row(_grant(workspace, grant_id)))
    return redirect(url_for("mcp_settings.page"))


@bp.get("/apps/<int:grant_id>/activity")
@mcp_admin_required
def app_activity(workspace, grant_id):
    grant = _grant(workspace, grant_id)
    if request.htmx and (request.htmx.target or "").startswith("app-tools-"):  # the row's "N calls" link
        return render_template("settings/_tool_breakdown.html", tools=by_tool(grant.id, usage=GrantUsage))
    return render_activity(workspace, "grant", grant.id, "connected_apps.app_activity", grant_id=grant.id)


@bp.post("/clients")
@mcp_admin_required
def create_client(workspace):
    form = client_form()
    issued = None
    if form.validate_on_submit():
        try:
            issued = core().oauth.create_confidential(
                workspace,
                form.name.data or "",
                _actor(),
                packs=form.levels(),
                resource=core().settings.mcp_public_url,
            )
        except InvalidInput as exc:
            target = getattr(form, exc.field, form.name)
            target.errors = [*target.errors, exc.message]
    if issued is None:
        if request.htmx:
            return render_template("settings/_oauth_client_form.html", client_form=form), 422
        from portal.mcp_settings import render_page

        return render_page(workspace, 422, client_form=form)
    # The one and only response that ever carries the client secret.
    context = {"issued_client": issued, "token_endpoint": f"{core().settings.portal_public_url}/oauth/token"}
    if request.htmx:
        body = render_template("settings/_oauth_client_created.html", **context) + render_template(
            "settings/_apps.html", **apps_context(workspace), client_form=client_form(), oob=True
        )
        return make_response(body, 201)
    from portal.mcp_settings import render_page

    return render_page(workspace, 201, **context)


@bp.post("/clients/<int:client_id>/revoke")
@mcp_admin_required
def revoke_client(workspace, client_id):
    try:
        client = core().oauth.workspace_client(workspace, client_id)
    except NotFound:
        abort(404)
    if ActionForm().validate_on_submit():
        core().oauth.revoke_client(client, _actor())
    if request.htmx:
        return render_template("settings/_apps.html", **apps_context(workspace), client_form=client_form())
    return redirect(url_for("mcp_settings.page"))
