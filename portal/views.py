"""The workspace home and the settings menu."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from poggio.identity.workspaces import memberships
from portal.access import current_membership
from portal.forms import ActionForm

bp = Blueprint("views", __name__)


def error_page(code: int, message: str):
    return render_template("error.html", code=code, message=message), code


@bp.app_context_processor
def layout_context():
    if not current_user.is_authenticated:
        return {}
    membership = current_membership()
    return {
        "membership": membership,
        "workspace": membership.workspace if membership else None,
        "all_memberships": memberships(current_user._get_current_object()),
        "action_form": ActionForm(),
    }


@bp.get("/")
@login_required
def home():
    from portal import home as content

    membership = current_membership()
    if membership is None:
        return render_template("home.html")
    if membership.role == "admin":
        return render_template("home.html", **content.admin_context(membership.workspace))
    return render_template("home.html", mine=content.member_context(membership.workspace, current_user))


@bp.get("/settings")
@login_required
def settings_index():
    from portal.mcp_settings import expiring_soon

    membership = current_membership()
    shown = membership is not None and membership.role == "admin" and membership.workspace.mcp_enabled
    return render_template(
        "settings/index.html", expiring=expiring_soon(membership.workspace) if shown and membership is not None else 0
    )
