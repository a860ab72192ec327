"""Resources of the accounts pack: ``poggio://accounts/{domain}`` (an account's profile, as JSON and
as text; listed for ``resources/list`` a page at a time) and the account card, an MCP App view of
``get_account``."""

from __future__ import annotations

from pathlib import Path

from poggio import ResourceEntry, ResourceNotFound, ToolContext, ToolError, app_view, hookimpl, keyset_page, resource
from poggio_accounts.models import Account, find_account, normalise_domain
from poggio_accounts.prompts import complete_domain
from poggio_accounts.tools import get_account

ACCOUNT_CARD = "ui://accounts/account-card.html"


@resource(
    "poggio://accounts/{domain}",
    name="account",
    complete={"domain": complete_domain},
    title="Account profile",
    description="Everything the workspace knows about one account (its profile, and a section from "
    "every pack in scope: contacts, revenue): JSON, then the same as text.",
)
def account(ctx: ToolContext, domain: str):
    if find_account(ctx.workspace_id, domain) is None:
        raise ResourceNotFound(f"no account with domain {normalise_domain(domain)!r} in this workspace")
    try:
        return get_account(ctx, domain=domain)
    except ToolError as exc:  # the account went away meanwhile
        raise ResourceNotFound(exc.message) from None


@account.list
def accounts(ctx: ToolContext, cursor: str | None, limit: int):
    """The workspace's accounts, by name."""
    q = Account.select(Account.id, Account.name, Account.domain).where(Account.workspace == ctx.workspace_id)
    rows, next_cursor = keyset_page(ctx, q, [Account.name, Account.id], {}, cursor, limit)
    entries = [
        ResourceEntry(uri=f"poggio://accounts/{a.domain}", name=a.domain, title=a.name, mime_type="application/json")
        for a in rows
    ]
    return entries, next_cursor


account_card = app_view(
    ACCOUNT_CARD,
    (Path(__file__).parent / "account_card.html").read_text(encoding="utf-8"),
    name="account_card",
    title="Account card",
    description="An account's card (profile, contacts, open deals), shown with get_account's result.",
)


@hookimpl
def poggio_resources():
    return [account, account_card]
