"""Prompts of the accounts pack: prepare for a call with an account, and what changed on it this
week; their ``domain`` argument completes from the workspace's account domains."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from poggio import Message, Resource, ToolContext, ToolError, prefix_values, prompt, utcnow
from poggio_accounts.models import Account, Note, find_account, normalise_domain
from poggio_accounts.tools import get_account

Domain = Annotated[str, Field(min_length=1, max_length=253, description="The account's web domain, e.g. example.com.")]


def complete_domain(ctx: ToolContext, value: str, arguments: dict[str, str]) -> list[str]:
    """The workspace's account domains starting with ``value`` (a range on the (workspace, domain)
    index, a bounded number of rows)."""
    prefix = normalise_domain(value) if value else ""
    query = Account.select(Account.domain).where(Account.workspace == ctx.workspace_id)
    return prefix_values(query, Account.domain, prefix)


def _account(ctx: ToolContext, domain: str) -> Account:
    account = find_account(ctx.workspace_id, domain)
    if account is None:
        raise ToolError("domain", f"no account with domain {normalise_domain(domain)!r} in this workspace")
    return account


def _profile(ctx: ToolContext, account: Account) -> Resource:
    """The account's profile as ``get_account`` writes it (every pack in the caller's scope), embedded."""
    text = get_account(ctx, domain=account.domain).text
    return Resource(f"poggio://accounts/{account.domain}", "text/markdown", text=text)


@prompt(title="Prepare for a call", complete={"domain": complete_domain})
def prepare_call(ctx: ToolContext, domain: Domain):
    """Prepare for a call with an account: its profile (contacts, deals, notes) and what to ask."""
    account = _account(ctx, domain)
    return [
        Message(_profile(ctx, account)),
        Message(
            f"I have a call with {account.name} ({account.domain}) soon. From the profile above, brief me: "
            "who they are, the people I may speak to, the open deals with their stage, amount and close "
            "date, what the recent notes say, and three questions worth asking. Point out anything "
            "overdue or at risk. Use get_account, list_opportunities or search_contacts if you need more."
        ),
    ]


@prompt(title="What changed this week", complete={"domain": complete_domain})
def account_week(ctx: ToolContext, domain: Domain):
    """Summarise what changed on an account in the last seven days: its notes and updates."""
    account = _account(ctx, domain)
    since = utcnow() - dt.timedelta(days=7)
    notes = list(
        Note.select(Note.text, Note.author, Note.created_at)
        .where((Note.workspace == ctx.workspace_id) & (Note.account == account.id) & (Note.created_at >= since))
        .order_by(Note.created_at.desc(), Note.id.desc())
        .limit(50)
    )
    lines = [f"Changes on {account.name} ({account.domain}) since {since:%Y-%m-%d %H:%M} UTC:"]
    if account.updated_at is not None and account.updated_at >= since:
        lines.append(f"- the account's details were last updated {account.updated_at:%Y-%m-%d %H:%M} UTC")
    lines += [f"- note {n.created_at:%Y-%m-%d %H:%M} by {n.author or 'someone'}: {n.text}" for n in notes]
    if len(lines) == 1:
        lines.append("- no notes and no updates this week")
    return [
        Message(_profile(ctx, account)),
        Message(
            "\n".join(lines)
            + "\n\nSummarise what changed on this account this week and what it means for the deals in "
            "its profile above; say plainly if nothing happened."
        ),
    ]


PROMPTS = [prepare_call, account_week]
