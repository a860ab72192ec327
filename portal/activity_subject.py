"""What an activity page or chart is about (the workspace, one token or one connected app) and the
filters of its request: shared by the activity table (:mod:`portal.activity`) and its chart
(:mod:`portal.activity_chart`)."""

from __future__ import annotations

from flask import abort, request

from poggio.errors import InvalidInput, NotFound
from poggio.records import activity as record
from portal.access import core


def subject_of(workspace, kind: str | None, subject_id: int | None):
    """The token or connected app a page is about (404 if not the workspace's), or None."""
    if kind is None or subject_id is None:
        return None
    try:
        if kind == "token":
            return core().tokens.get(workspace, subject_id)
        return core().oauth.grant(workspace, subject_id)
    except NotFound:
        abort(404)


def filters_of(kind=None, subject_id=None) -> tuple[record.Filters, str | None]:
    """The filters of the request, and a message for a bad one (then the unfiltered record is shown)."""
    try:
        return record.Filters.parse(
            kind=kind,
            subject_id=subject_id,
            tool=request.args.get("tool"),
            outcome=request.args.get("outcome"),
            since=request.args.get("since"),
            until=request.args.get("until"),
        ), None
    except InvalidInput as exc:
        return record.Filters(kind=kind, subject_id=subject_id), f"{exc.field}: {exc.message}"
