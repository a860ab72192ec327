"""Settings > MCP Server: the server URL, token generation (shown once), the token list with activity,
inline edit, revoke, rotate, and connection snippets.

Every state change is an HTMX request answered with the partial it changed; the same partials make
up the full page, which is also what a browser without JavaScript gets back (forms post and the page
renders again)."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from htmx_flask import make_response

from poggio.audit import Actor
from poggio.db import utcnow
from poggio.errors import InvalidInput, NotFound
from poggio.tokens import status
from poggio.usage_report import by_tool, daily
from portal.access import client_ip, core, mcp_admin_required, page_number
from portal.charts import activity_bars, ago
from portal.connected_apps import apps_context, client_form
from portal.forms import ActionForm, EditTokenForm, TokenForm

bp = Blueprint("mcp_settings", __name__, url_prefix="/settings/mcp")


@bp.app_template_filter("ago")
def _ago(moment):
    return ago(moment)


def _actor() -> Actor:
    return Actor(current_user._get_current_object(), ip=client_ip())


PAGE_SIZE = 50  # tokens per page of the list: the page costs the same with 50 tokens or 5,000


def _show() -> str:
    return "all" if request.values.get("show") == "all" else "active"


def _token(workspace, token_id: int):
    try:
        return core()["tokens"].get(workspace, token_id)
    except NotFound:
        abort(404)


def _row(token, series=None) -> dict:
    if series is None:
        series = daily([token.id])[token.id]
    return {"t": token, "status": status(token), "chart": activity_bars(series)}


def _listing(workspace, show: str, page: int = 1) -> dict:
    """The template context of one page of the token list."""
    tokens = core()["tokens"].list(workspace, include_inactive=(show == "all"), limit=PAGE_SIZE + 1,
                                   offset=(page - 1) * PAGE_SIZE)
    more, tokens = len(tokens) > PAGE_SIZE, tokens[:PAGE_SIZE]
    series = daily([t.id for t in tokens])  # one query for the whole page
    return {"rows": [_row(t, series[t.id]) for t in tokens], "show": show, "page": page, "more": more}


def _token_form() -> TokenForm:
    form = TokenForm()
    form.offer(pack_choices())
    return form


def pack_choices() -> list[tuple[str, str]]:
    return [(name, pack.info.title) for name, pack in core()["registry"].packs.items()]


def render_page(workspace, status_code=200, **extra):
    """The whole Settings > MCP Server page: server URL, API tokens, connected apps, OAuth clients."""
    show = _show()
    context = {
        **_listing(workspace, show, page_number()),
        **apps_context(workspace),
        "client_form": extra.pop("client_form", None) or client_form(),
        "server_url": core()["settings"].mcp_public_url,
        "product": core()["settings"].product_name,
        "form": extra.pop("form", None) or _token_form(),
        "dialog_open": extra.pop("dialog_open", False),
        **extra,
    }
    return render_template("settings/mcp.html", **context), status_code


def _field_error(form, exc: InvalidInput) -> None:
    field = {"expires": "expiry"}.get(exc.field, exc.field)
    target = getattr(form, field, None) or form.name
    target.errors = [*target.errors, exc.message] if isinstance(target.errors, list) else [exc.message]


@bp.get("/")
@mcp_admin_required
def page(workspace):
    if request.htmx and request.htmx.target == "token-list":
        return render_template("settings/_token_list.html", **_listing(workspace, _show(), page_number()))
    return render_page(workspace)


@bp.get("/tokens/new")
@mcp_admin_required
def new_token(workspace):
    if request.htmx:
        return render_template("settings/_token_dialog.html", form=_token_form())
    return render_page(workspace, dialog_open=True)


@bp.post("/tokens")
@mcp_admin_required
def create_token(workspace):
    form = _token_form()
    issued = None
    if form.validate_on_submit():
        try:
            issued = core()["tokens"].create(workspace, form.name.data or "", _actor(),
                                             expires=form.expiry_value(), packs=form.levels())
        except InvalidInput as exc:
            missing_date = form.expiry_value() == "missing-date"
            _field_error(form, InvalidInput("expiry_date", "choose a date") if missing_date else exc)
    if issued is None:
        if request.htmx:
            return render_template("settings/_token_dialog.html", form=form), 422
        return render_page(workspace, 422, form=form, dialog_open=True)
    # The one and only response that ever carries the plaintext token.
    if request.htmx:
        body = render_template("settings/_token_created.html", issued=issued, rotated=False) + render_template(
            "settings/_token_list.html", **_listing(workspace, "active"), oob=True)
        return make_response(body, 201)
    return render_page(workspace, 201, issued=issued, rotated=False)


@bp.get("/tokens/<int:token_id>")
@mcp_admin_required
def token_row(workspace, token_id):
    return render_template("settings/_token_row.html", row=_row(_token(workspace, token_id)))


@bp.get("/tokens/<int:token_id>/edit")
@mcp_admin_required
def edit_token(workspace, token_id):
    token = _token(workspace, token_id)
    form = EditTokenForm(name=token.name)
    form.offer(pack_choices(), token.packs or "")
    if request.htmx:
        return render_template("settings/_token_row_edit.html", row=_row(token), form=form)
    return render_template("settings/token_edit.html", row=_row(token), form=form)


@bp.post("/tokens/<int:token_id>")
@mcp_admin_required
def update_token(workspace, token_id):
    token = _token(workspace, token_id)
    form = EditTokenForm()
    form.offer(pack_choices())
    if form.validate_on_submit():
        service = core()["tokens"]
        try:
            service.rename(token, form.name.data or "", _actor())
            if request.form.get("pack_scopes"):  # the form showed the packs: what is ticked is the scope
                service.set_packs(token, form.levels(), _actor())
            if form.expiry.data != "keep":
                if form.expiry_value() == "missing-date":
                    raise InvalidInput("expiry_date", "choose a date")
                service.set_expiry(token, form.expiry_value(), _actor())
        except InvalidInput as exc:
            _field_error(form, exc)
        else:
            token = _token(workspace, token_id)
            if request.htmx:
                return render_template("settings/_token_row.html", row=_row(token))
            return redirect(url_for(".page"))
    template = "settings/_token_row_edit.html" if request.htmx else "settings/token_edit.html"
    return render_template(template, row=_row(_token(workspace, token_id)), form=form), 422


@bp.post("/tokens/<int:token_id>/revoke")
@mcp_admin_required
def revoke_token(workspace, token_id):
    token = _token(workspace, token_id)
    if ActionForm().validate_on_submit():
        token = core()["tokens"].revoke(token, _actor())
    if request.htmx:
        return render_template("settings/_token_row.html", row=_row(token))
    return redirect(url_for(".page"))


@bp.post("/tokens/<int:token_id>/rotate")
@mcp_admin_required
def rotate_token(workspace, token_id):
    token = _token(workspace, token_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        issued = core()["tokens"].rotate(token, _actor())
    except InvalidInput as exc:
        return render_template("error.html", code=409, message=exc.message), 409
    if request.htmx:
        body = render_template("settings/_token_created.html", issued=issued, rotated=True) + render_template(
            "settings/_token_row.html", row=_row(issued.token), oob=True)
        return make_response(body, 200)
    return render_page(workspace, 200, issued=issued, rotated=True)


@bp.get("/tokens/<int:token_id>/activity")
@mcp_admin_required
def token_activity(workspace, token_id):
    token = _token(workspace, token_id)
    template = "settings/_tool_breakdown.html" if request.htmx else "settings/token_activity.html"
    return render_template(template, token=token, tools=by_tool(token.id), now=utcnow())
