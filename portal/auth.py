"""Sign in, sign out, switch workspace."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from poggio.identity import sessions
from poggio.identity.workspaces import check_password, find_user, memberships
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import parse_id
from poggio.storage.models import Membership
from portal.access import client_ip, current_membership
from portal.access import throttle as access_throttle
from portal.forms import ActionForm, SignInForm
from portal.signin import SessionUser, open_session, safe_next
from portal.sso import password_refused

bp = Blueprint("auth", __name__)


def _workspace_of(user) -> int | None:
    """The workspace whose audit log records a sign-in: the user's first (a user of several
    workspaces sees their sign-ins in the first one's log)."""
    if user is None:
        return None
    first = Membership.select(Membership.workspace).where(Membership.user == user).order_by(Membership.id).first()
    return first.workspace_id if first else None


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("views.home"))
    form = SignInForm()
    error = None
    status = 200
    if form.validate_on_submit():
        email, ip = (form.email.data or "").strip().lower(), client_ip() or "-"
        throttle = access_throttle()
        wait = throttle.attempt(email, ip)
        if wait:
            later = f"{wait} seconds" if wait < 120 else f"{wait // 60} minutes"
            error = f"Too many failed sign-ins from here. Try again in {later}."
            status = 429
        else:
            user = find_user(email)
            refused = None
            if check_password(user, form.password.data):
                refused = password_refused(user)
                if refused is None:
                    user = SessionUser.get_by_id(user.id)
                    throttle.succeeded(email, ip)
                    open_session(user)
                    audit.record("user.signed_in", Actor(user, ip=ip), _workspace_of(user), target=email)
                    return redirect(safe_next(request.args.get("next")))
            audit.record(
                "user.sign_in_failed",
                Actor(label=email, ip=ip),
                _workspace_of(user),
                target=email,
                **({"reason": "single sign-on required"} if refused else {}),
            )
            error = refused or "That e-mail and password do not match."
            status = 403 if refused else 401
    elif request.method == "POST":
        status = 400
    return render_template("sign_in.html", form=form, error=error), status


@bp.post("/sign-out")
@login_required
def sign_out():
    form = ActionForm()
    if form.validate_on_submit():
        membership = current_membership()
        audit.record(
            "user.signed_out",
            Actor(current_user._get_current_object(), ip=client_ip()),
            membership.workspace_id if membership else None,
            target=current_user.email,
        )
        sessions.end(session.get("sid"))
        logout_user()
        session.clear()
        flash("You are signed out.")
    return redirect(url_for("auth.sign_in"))


@bp.post("/workspace")
@login_required
def switch_workspace():
    form = ActionForm()
    wanted = parse_id(request.form.get("workspace_id", ""))
    if form.validate_on_submit() and wanted is not None:
        if any(m.workspace_id == wanted for m in memberships(current_user._get_current_object())):
            session["workspace_id"] = wanted
    return redirect(url_for("views.home"))
