"""Who is signed in, in which workspace, with which role; and the guards of admin pages."""

from __future__ import annotations

import functools

from flask import abort, current_app, g, session
from flask_login import current_user, login_required

from poggio.identity.oauth import normalise_resource
from poggio.services import Services
from poggio.storage.models import Membership, Workspace
from portal.throttle import Throttle


def core() -> Services:
    """The application's :class:`~poggio.services.Services` (settings, packs, token and OAuth services)."""
    return current_app.extensions["poggio"]


def throttle() -> Throttle:
    """The sign-in throttle of this application (failed attempts per e-mail and per address)."""
    return current_app.extensions["poggio.throttle"]


def mcp_resource() -> str:
    """The MCP server's resource URL (RFC 8707) as tokens are bound to it."""
    return normalise_resource(core().settings.mcp_public_url)


def client_ip() -> str | None:
    from flask import request

    return request.remote_addr


MAX_PAGE = 10_000


def page_number() -> int:
    """The ``page`` parameter of a listing: 1 for anything that is not a number from 1 to MAX_PAGE
    (a page past the database's integer range would be an error, not an empty page)."""
    from flask import request

    value = request.values.get("page", "1")
    return max(1, min(int(value), MAX_PAGE)) if value.isdigit() and len(value) < 10 else 1


def current_membership() -> Membership | None:
    """The membership of the workspace chosen in the session (the first one otherwise)."""
    if "membership" in g:
        return g.membership
    membership = None
    if current_user.is_authenticated:
        query = (
            Membership.select(Membership, Workspace)
            .join(Workspace)
            .where(Membership.user == current_user.id)
            .order_by(Workspace.name)
        )
        chosen = session.get("workspace_id")
        membership = (query.where(Membership.workspace == chosen).first() if chosen else None) or query.first()
    g.membership = membership
    return membership


def _admin_page(view, needs_mcp: bool):
    @functools.wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        membership = current_membership()
        if needs_mcp and (membership is None or not membership.workspace.mcp_enabled):
            abort(404)  # the page does not exist for a workspace without the entitlement
        if membership is None or membership.role != "admin":
            abort(403)
        return view(membership.workspace, *args, **kwargs)

    return wrapper


def mcp_admin_required(view):
    """The MCP Server pages: 404 when the workspace lacks the entitlement, 403 for members."""
    return _admin_page(view, needs_mcp=True)


def admin_required(view):
    return _admin_page(view, needs_mcp=False)
