"""What the Settings > MCP Server page shows, section by section (API tokens, connected apps and OAuth
clients, members' app requests and the app policy, the Tools section), and the page as a whole
(:func:`render_page`). The routes that change a section (:mod:`portal.mcp_settings`,
:mod:`portal.connected_apps`, :mod:`portal.app_requests`) render from here; nothing here changes anything."""

from __future__ import annotations

from typing import cast

from flask import render_template

from poggio.identity import app_access, policy, scopes
from poggio.identity.tokens import EXPIRING_SOON, status
from poggio.records.usage_report import daily
from poggio.storage.db import utcnow
from poggio.storage.models import ApiToken, GrantUsage
from portal.access import core, page_number
from portal.charts import activity_bars
from portal.forms import (
    AppPolicyForm,
    OAuthClientForm,
    PolicyForm,
    TokenForm,
    limit_expiry_choices,
)
from portal.htmx import request


def _request_row(grant) -> dict:
    return {
        "g": grant,
        "identity": app_access.identity(grant.client),
        "packs": scopes.describe(scopes.parse(grant.packs)),
    }


def requests_context(workspace) -> dict:
    """The template context of the Requests section."""
    return {"requests": [_request_row(g) for g in app_access.requests(workspace)]}


def app_policy_form(workspace) -> AppPolicyForm:
    form = AppPolicyForm()
    if not form.is_submitted():
        rules = app_access.AppPolicy.of(workspace)
        form.apps.data, form.access.data = rules.apps, rules.access
        form.allowed.data = "\n".join(rules.allowed)
    return form


def policy_context(workspace) -> dict:
    return {"app_policy": app_access.AppPolicy.of(workspace)}


def grant_status(grant, now=None) -> str:
    now = now or utcnow()
    if grant.approval == "denied":
        return "denied"
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return "pending" if grant.approval == "pending" else "active"


def _app_row(grant, series=None) -> dict:
    if series is None:
        series = daily([grant.id], usage=GrantUsage)[grant.id]
    return {
        "g": grant,
        "status": grant_status(grant),
        "chart": activity_bars(series),
        "packs": scopes.describe(scopes.parse(grant.packs)),
        "identity": app_access.identity(grant.client),
    }


def apps_context(workspace) -> dict:
    """The template context of the connected apps and OAuth clients sections."""
    service = core().oauth
    grants = service.grants(workspace)
    series = daily([g.id for g in grants], usage=GrantUsage)
    return {"apps": [_app_row(g, series[g.id]) for g in grants], "clients": service.clients(workspace)}


def client_form() -> OAuthClientForm:
    form = OAuthClientForm()
    form.offer(pack_choices())
    return form


PAGE_SIZE = 50  # tokens per page of the list: the page costs the same with 50 tokens or 5,000


def _show() -> str:
    return "all" if request.values.get("show") == "all" else "active"


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
