"""The audit log of a workspace, for its admins."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request

from poggio.records.audit import ACTIONS, WRITE_ACTIONS
from poggio.storage.models import AuditEvent
from portal.access import admin_required, page_number

bp = Blueprint("audit_log", __name__, url_prefix="/settings/audit")
PAGE = 50


@bp.get("/")
@admin_required
def index(workspace):
    page = page_number()
    writes = request.args.get("writes") == "1"  # only the changes write tools made
    query = AuditEvent.select().where(AuditEvent.workspace == workspace).order_by(AuditEvent.id.desc())
    if writes:
        query = query.where(AuditEvent.action.in_(WRITE_ACTIONS))
    events = list(query.paginate(page, PAGE + 1))
    rows = [
        {"event": e, "label": ACTIONS.get(e.action, e.action), "detail": json.loads(e.detail) if e.detail else {}}
        for e in events[:PAGE]
    ]
    return render_template("settings/audit.html", rows=rows, page=page, more=len(events) > PAGE, writes=writes)
