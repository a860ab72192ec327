"""Settings > MCP Server > Activity: every MCP request on record, workspace-wide or of one token or
connected app, newest first, filtered by tool, outcome and dates, paged by cursor (HTMX swaps the
results; without JavaScript the filter form is a plain GET), and exported as CSV or JSON Lines,
streamed whatever its size."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, stream_with_context, url_for

from poggio.errors import InvalidInput
from poggio.records import activity as record
from poggio.records.usage_report import by_tool
from poggio.storage.db import parse_id, utcnow
from poggio.storage.models import GrantUsage
from portal.access import core, mcp_admin_required
from portal.activity_chart import chart_context
from portal.activity_subject import filters_of, subject_of
from portal.htmx import request

bp = Blueprint("activity", __name__, url_prefix="/settings/mcp")

OUTCOME_LABELS = {
    "ok": "OK",
    "tool_error": "Tool error",
    "refused": "Refused",
    "rate_limited": "Rate-limited",
    "timed_out": "Timed out",
}


def _tool_choices(workspace, filters: record.Filters) -> list[str]:
    """The installed tools and the method names (and the one filtered by, if it is neither)."""
    installed = [t.name for t in core().registry.tools()]
    return sorted(set(installed) | set(record.METHOD_LABELS) | ({filters.tool} if filters.tool else set()))


def render_activity(workspace, kind=None, subject_id=None, endpoint="activity.workspace_activity", **args):
    filters, problem = filters_of(kind, subject_id)
    subject = subject_of(workspace, kind, subject_id)
    try:
        rows, next_cursor = record.page(workspace, filters, request.args.get("cursor"))
    except InvalidInput as exc:
        rows, next_cursor = record.page(workspace, filters)
        problem = "; ".join(p for p in (problem, f"{exc.field}: {exc.message}") if p)
    names = (
        record.subject_names(workspace.id)
        if kind is None
        else {(kind, subject_id): subject.name if kind == "token" else subject.client.name}
    )
    # Any: url_for's keywords include _external (a bool), which a dict[str, str] of arguments could be taken for
    query: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("tool", "outcome", "since", "until") and v}
    context = {
        "rows": rows,
        "names": names,
        "filters": filters,
        "problem": problem,
        "query": query,
        "next_url": url_for(endpoint, **args, **query, cursor=next_cursor) if next_cursor else None,
        "first_url": url_for(endpoint, **args, **query) if request.args.get("cursor") else None,
        "self_url": url_for(endpoint, **args),
        "export_csv": url_for(
            "activity.export", fmt="csv", **({"kind": kind, "subject": subject_id} if kind else {}), **query
        ),
        "export_jsonl": url_for(
            "activity.export", fmt="jsonl", **({"kind": kind, "subject": subject_id} if kind else {}), **query
        ),
        "outcomes": OUTCOME_LABELS,
        "tools": _tool_choices(workspace, filters),
        "kind": kind,
        "subject": subject,
        "retention": core().settings.activity_retention_days,
    }
    context.update(chart_context(workspace, filters, kind, subject_id))
    if request.htmx and request.htmx.target == "activity-results":
        return render_template("settings/_activity_results.html", **context)
    if kind is not None:
        usage = GrantUsage if kind == "grant" else None
        context["breakdown"] = by_tool(subject_id, usage=usage) if usage else by_tool(subject_id)
    return render_template("settings/activity.html", now=utcnow(), **context)


@bp.get("/activity")
@mcp_admin_required
def workspace_activity(workspace):
    return render_activity(workspace)


@bp.get("/tokens/<int:token_id>/activity")
@mcp_admin_required
def token_activity(workspace, token_id):
    if request.htmx and request.htmx.target and request.htmx.target.startswith("tools-"):
        # the row's "N calls" link: the per-tool breakdown only
        token = subject_of(workspace, "token", token_id)
        return render_template("settings/_tool_breakdown.html", token=token, tools=by_tool(token.id), now=utcnow())
    return render_activity(workspace, "token", token_id, "activity.token_activity", token_id=token_id)


@bp.get("/activity/export.<fmt>")
@mcp_admin_required
def export(workspace, fmt):
    if fmt not in record.FORMATS:
        abort(404)
    kind = request.args.get("kind") or None
    subject = parse_id(request.args.get("subject", ""))
    if kind is not None:
        if kind not in record.KINDS or subject is None:
            return Response(
                "kind and subject: a token or connected app of this workspace\n", 400, mimetype="text/plain"
            )
        subject_of(workspace, kind, subject)
    try:
        filters = record.Filters.parse(
            kind=kind,
            subject_id=subject if kind else None,
            tool=request.args.get("tool"),
            outcome=request.args.get("outcome"),
            since=request.args.get("since"),
            until=request.args.get("until"),
        )
    except InvalidInput as exc:
        return Response(f"{exc.field}: {exc.message}\n", 400, mimetype="text/plain")
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(
        stream_with_context(record.export(workspace.id, filters, fmt)),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="poggio-activity-{workspace.slug}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
