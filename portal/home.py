"""The home page's content: for an admin, what needs attention in the workspace, each item linked to
the page where it is fixed; for a member, their own connected apps and app requests."""

from __future__ import annotations

from flask import url_for

from poggio.notices import attention

SECTIONS = (
    ("expiring", "Expiring within 7 days"),
    ("requests", "Requests waiting for approval"),
    ("unused", "Tokens not used in 30 days"),
    ("errors", "Rising error rate"),
    ("refused", "Refused today"),
    ("unusual", "Unusual use"),
    ("webhooks", "Webhooks"),
)


def link(finding: attention.Finding) -> str | None:
    """Where ``finding`` is fixed (or looked into)."""
    kind, subject, ident = finding.kind, finding.subject, finding.subject_id
    if subject == "token":
        if kind in ("expiring", "unused"):
            return url_for("mcp_settings.edit_token", token_id=ident)
        return url_for("activity.token_activity", token_id=ident)
    if subject == "grant":
        return url_for("connected_apps.app_activity", grant_id=ident)
    if subject == "webhook":
        return url_for("webhooks.detail", endpoint_id=ident)
    if subject == "request":
        return url_for("mcp_settings.page") + "#app-requests"
    if kind == "refused":
        return url_for("activity.workspace_activity", outcome=finding.detail.get("outcome"), since="24h")
    return None


def admin_context(workspace) -> dict:
    found = attention.for_admin(workspace)
    if not workspace.mcp_enabled:  # tokens and apps exist only with the MCP entitlement
        found = {k: v if k == "webhooks" else [] for k, v in found.items()}
    sections = [
        {"key": key, "title": title, "items": [{"f": f, "href": link(f)} for f in found[key]]}
        for key, title in SECTIONS
    ]
    return {"sections": sections, "all_clear": not any(s["items"] for s in sections)}


def member_context(workspace, user) -> dict:
    return attention.for_member(workspace, user)
