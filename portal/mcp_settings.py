"""Settings > MCP Server: the server URL, token generation (shown once), the token list with activity,
inline edit, revoke, rotate, and connection snippets.

Every state change is an HTMX request answered with the partial it changed; the same partials make
up the full page, which is also what a browser without JavaScript gets back (forms post and the page
renders again)."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, abort, redirect, render_template, url_for
from flask_login import current_user
from htmx_flask import make_response

from poggio.errors import InvalidInput, NotFound
from poggio.identity import policy
from poggio.identity.tokens import EXPIRING_SOON, status
from poggio.records.audit import Actor
from poggio.records.usage_report import daily
from poggio.storage.db import utcnow
from poggio.storage.models import ApiToken
from portal.access import client_ip, core, mcp_admin_required, page_number
from portal.app_requests import app_policy_form, policy_context, requests_context
from portal.charts import activity_bars, ago
from portal.connected_apps import apps_context, client_form
from portal.forms import ActionForm, EditTokenForm, PolicyForm, RotateForm, TokenForm, limit_expiry_choices
from portal.htmx import request

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
        return core().tokens.get(workspace, token_id)
    except NotFound:
        abort(404)


def _row(token, series=None) -> dict:
    if series is None:
        series = daily([token.id])[token.id]
    now = utcnow()
    overlap = (
        token.previous_expires_at
        if token.previous_expires_at and token.previous_expires_at > now and token.revoked_at is None
        else None
    )
    return {
        "t": token,
        "status": status(token, now),
        "chart": activity_bars(series),
        "old_until": overlap,
        "capped": token.expiry_capped_at is not None and token.revoked_at is None,
    }


def expiring_soon(workspace) -> int:
    """Active tokens of the workspace that expire within 7 days (the Settings pages flag them)."""
    now = utcnow()
    return (
        ApiToken.select()
        .where(
            (ApiToken.workspace == workspace)
            & ApiToken.revoked_at.is_null()
            & (ApiToken.expires_at > now)
            & (ApiToken.expires_at <= now + EXPIRING_SOON)
        )
        .count()
    )


def _listing(workspace, show: str, page: int = 1) -> dict:
    """The template context of one page of the token list."""
    tokens = core().tokens.list(
        workspace, include_inactive=(show == "all"), limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
    )
    more, tokens = len(tokens) > PAGE_SIZE, tokens[:PAGE_SIZE]
    series = daily([t.id for t in tokens])  # one query for the whole page
    return {"rows": [_row(t, series[t.id]) for t in tokens], "show": show, "page": page, "more": more}


def _token_form(workspace) -> TokenForm:
    rules = policy.Policy.of(workspace)
    form = TokenForm()
    form.offer(pack_choices())
    form.tools.choices = tool_choices()
    limit_expiry_choices(form, rules)
    if not form.is_submitted():
        default = rules.default_expiry
        form.expiry.data = "never" if default == "never" else default.removesuffix("d")
        choices = cast(list[tuple[str, str]], form.expiry.choices)  # the pairs limit_expiry_choices left
        if form.expiry.data not in dict(choices):
            form.expiry.data = choices[0][0]
    return form


def _policy_form(workspace) -> PolicyForm:
    form = PolicyForm()
    if not form.is_submitted():
        rules = policy.Policy.of(workspace)
        form.default_expiry.data = str(rules.default_expiry_days) if rules.default_expiry_days else "none"
        form.max_lifetime.data = str(rules.max_lifetime_days) if rules.max_lifetime_days else "none"
        form.allow_no_expiry.data = rules.allow_no_expiry
    for field, days in (
        (form.default_expiry, workspace.default_expiry_days),
        (form.max_lifetime, workspace.max_lifetime_days),
    ):
        choices = cast(list[tuple[str, str]], field.choices)  # PolicyForm's pairs
        if days and str(days) not in dict(choices):  # set from the command line to another number
            field.choices = [*choices, (str(days), f"{days} days")]
    return form


def pack_choices() -> list[tuple[str, str]]:
    return [(name, pack.info.title) for name, pack in core().registry.packs.items()]


def tool_choices() -> list[tuple[str, str]]:
    """Every loaded tool, by pack: ``(name, "Pack: Title (name)")``."""
    packs = core().registry.packs
    return [
        (t.name, f"{packs[t.pack].info.title if t.pack in packs else t.pack}: {t.title} ({t.name})")
        for t in sorted(core().registry.tools(), key=lambda t: (t.pack, t.name))
    ]


def tools_context(workspace) -> dict:
    """The Tools section: every pack's tools with their annotations and whether they are on."""
    packs = core().registry.packs
    rows = [
        {"spec": spec, "on": on, "pack_title": packs[spec.pack].info.title if spec.pack in packs else spec.pack}
        for spec, on in core().switches.tools(workspace)
    ]
    return {"tool_rows": rows}


def render_page(workspace, status_code=200, **extra):
    """The whole Settings > MCP Server page: server URL, API tokens, connected apps, OAuth clients."""
    show = _show()
    context = {
        **_listing(workspace, show, page_number()),
        **apps_context(workspace),
        "client_form": extra.pop("client_form", None) or client_form(),
        "server_url": core().settings.mcp_public_url,
        "product": core().settings.product_name,
        "form": extra.pop("form", None) or _token_form(workspace),
        "dialog_open": extra.pop("dialog_open", False),
        "policy_form": extra.pop("policy_form", None) or _policy_form(workspace),
        "policy": policy.Policy.of(workspace),
        **requests_context(workspace),
        **policy_context(workspace),
        "app_policy_form": extra.pop("app_policy_form", None) or app_policy_form(workspace),
        "expiring": expiring_soon(workspace),
        **tools_context(workspace),
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
        return render_template("settings/_token_dialog.html", form=_token_form(workspace))
    return render_page(workspace, dialog_open=True)


@bp.post("/tokens")
@mcp_admin_required
def create_token(workspace):
    form = _token_form(workspace)
    issued = None
    if form.validate_on_submit():
        try:
            issued = core().tokens.create(
                workspace,
                form.name.data or "",
                _actor(),
                expires=form.expiry_value(),
                packs=form.levels(),
                allowed_ips=form.allowed_ips.data or None,
                rate_limit=form.rate_limit.data or None,
                tools=form.tools.data or None,
            )
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
            "settings/_token_list.html", **_listing(workspace, "active"), oob=True
        )
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
    form = EditTokenForm(
        name=token.name, allowed_ips="\n".join(token.allowed_ip_list), rate_limit=token.rate_limit or ""
    )
    form.offer(pack_choices(), token.packs or "")
    limit_expiry_choices(form, policy.Policy.of(workspace))
    if request.htmx:
        return render_template("settings/_token_row_edit.html", row=_row(token), form=form)
    return render_template("settings/token_edit.html", row=_row(token), form=form)


@bp.post("/tokens/<int:token_id>")
@mcp_admin_required
def update_token(workspace, token_id):
    token = _token(workspace, token_id)
    form = EditTokenForm()
    form.offer(pack_choices())
    limit_expiry_choices(form, policy.Policy.of(workspace))
    if form.validate_on_submit():
        service = core().tokens
        try:
            service.rename(token, form.name.data or "", _actor())
            if request.form.get("pack_scopes"):  # the form showed the packs: what is ticked is the scope
                service.set_packs(token, form.levels(), _actor())
            service.set_limits(
                token, _actor(), allowed_ips=form.allowed_ips.data or None, rate_limit=form.rate_limit.data or None
            )
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
        token = core().tokens.revoke(token, _actor())
    if request.htmx:
        return render_template("settings/_token_row.html", row=_row(token))
    return redirect(url_for(".page"))


@bp.get("/tokens/<int:token_id>/rotate")
@mcp_admin_required
def rotate_dialog(workspace, token_id):
    """Rotation asks how long the old secret may overlap with the new one."""
    token = _token(workspace, token_id)
    if request.htmx:
        return render_template("settings/_rotate_dialog.html", token=token, form=RotateForm())
    return render_template("settings/token_rotate.html", token=token, form=RotateForm())


@bp.post("/tokens/<int:token_id>/rotate")
@mcp_admin_required
def rotate_token(workspace, token_id):
    token = _token(workspace, token_id)
    form = RotateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        issued = core().tokens.rotate(token, _actor(), grace=form.grace.data)
    except InvalidInput as exc:
        return render_template("error.html", code=409, message=exc.message), 409
    if request.htmx:
        # a <tr> swapped out of band must come in a <template>, or the HTML parser drops it outside a table
        body = (
            render_template("settings/_token_created.html", issued=issued, rotated=True)
            + "<template>"
            + render_template("settings/_token_row.html", row=_row(issued.token), oob=True)
            + "</template>"
        )
        return make_response(body, 200)
    return render_page(workspace, 200, issued=issued, rotated=True)


@bp.post("/policy")
@mcp_admin_required
def set_policy(workspace):
    """The workspace's token policy. Tightening the maximum shortens what lives longer (said on the page)."""
    form = _policy_form(workspace)
    if not form.validate_on_submit():
        return render_page(workspace, 422, policy_form=form)
    try:
        _, capped = policy.set_policy(
            workspace,
            _actor(),
            default_expiry=form.default_expiry.data,
            max_lifetime=form.max_lifetime.data,
            allow_no_expiry=bool(form.allow_no_expiry.data) if form.max_lifetime.data == "none" else None,
        )
    except InvalidInput as exc:
        getattr(form, exc.field, form.default_expiry).errors = [exc.message]
        return render_page(workspace, 422, policy_form=form)
    return render_page(workspace, 200, policy_saved=True, capped=capped)


@bp.post("/tools/<name>")
@mcp_admin_required
def switch_tool(workspace, name):
    """Switch one tool on or off (``on`` = "1" or "0"); answers the tool's row (HTMX) or the page."""
    if not ActionForm().validate_on_submit():
        abort(400)
    wanted = request.form.get("on")
    if wanted not in ("0", "1"):
        abort(400)
    try:
        core().switches.switch(workspace, _actor(), **({"on": [name]} if wanted == "1" else {"off": [name]}))
    except InvalidInput:
        abort(404)
    if request.htmx:
        row = next(r for r in tools_context(workspace)["tool_rows"] if r["spec"].name == name)
        return render_template("settings/_tool_row.html", row=row)
    return redirect(url_for(".page") + "#tools")
