"""The activity chart's data, as JSON, for the filters of the activity page it is drawn on
(workspace-wide, of one token, or of one connected app)."""

from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from poggio.records.activity_chart import chart
from portal.access import mcp_admin_required
from portal.activity_subject import filters_of, subject_of

bp = Blueprint("activity_chart", __name__, url_prefix="/settings/mcp")


def _tools() -> list[str]:
    """The names a call's ``tool`` takes: the installed tools and the MCP method labels."""
    from poggio.records.activity import METHOD_LABELS
    from portal.access import core

    return sorted({t.name for t in core().registry.tools()} | set(METHOD_LABELS))


def chart_url(kind, subject_id, query: dict) -> str:
    if kind == "token":
        return url_for("activity_chart.token_chart", token_id=subject_id, **query)
    if kind == "grant":
        return url_for("activity_chart.app_chart", grant_id=subject_id, **query)
    return url_for("activity_chart.workspace_chart", **query)


def chart_context(workspace, filters, kind, subject_id) -> dict:
    """What the activity page's chart needs: its figures (for the table behind it) and its JSON URL."""
    from flask import request

    query = {k: v for k, v in request.args.items() if k in ("tool", "outcome", "since", "until") and v}
    from poggio.records.activity_chart import SAMPLE

    return {
        "chart": chart(workspace.id, filters, tools=_tools()),
        "chart_url": chart_url(kind, subject_id, query),
        "sample": f"{SAMPLE:,}",
    }


def _answer(workspace, kind=None, subject_id=None):
    subject_of(workspace, kind, subject_id)  # 404 unless the workspace's
    filters, problem = filters_of(kind, subject_id)
    if problem:
        return jsonify(error=problem), 400
    data = chart(workspace.id, filters, tools=_tools())
    response = jsonify(data)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/activity/chart.json")
@mcp_admin_required
def workspace_chart(workspace):
    return _answer(workspace)


@bp.get("/tokens/<int:token_id>/activity/chart.json")
@mcp_admin_required
def token_chart(workspace, token_id):
    return _answer(workspace, "token", token_id)


@bp.get("/apps/<int:grant_id>/activity/chart.json")
@mcp_admin_required
def app_chart(workspace, grant_id):
    return _answer(workspace, "grant", grant_id)
