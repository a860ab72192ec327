"""Prompts of the revenue pack: review the pipeline closing this quarter, and review one deal (its
``opportunity`` argument completes from the workspace's opportunity names)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, cast

from pydantic import Field

from poggio import Message, ToolContext, ToolError, prefix_values, prompt, utcnow
from poggio_accounts import Account
from poggio_revenue.models import Opportunity
from poggio_revenue.tools import get_revenue_summary, list_opportunities


def _quarter(today: dt.date) -> tuple[dt.date, dt.date]:
    first_month = 3 * ((today.month - 1) // 3) + 1
    start = dt.date(today.year, first_month, 1)
    end = dt.date(today.year + (first_month == 10), (first_month + 2) % 12 + 1, 1) - dt.timedelta(days=1)
    return start, end


@prompt(title="Review this quarter's pipeline")
def quarter_pipeline(ctx: ToolContext):
    """Review the pipeline closing this quarter: totals per currency and stage, and the biggest open deals."""
    start, end = _quarter(utcnow().date())
    summary = get_revenue_summary(ctx, closing_after=start, closing_before=end).text
    biggest = list_opportunities(ctx, closing_after=start, closing_before=end, min_amount=None, limit=20).text
    return Message(
        f"Review the pipeline closing this quarter ({start:%Y-%m-%d} to {end:%Y-%m-%d}).\n\n"
        f"Totals:\n{summary}\n\nOpportunities closing this quarter (first page):\n{biggest}\n\n"
        "Tell me what is likely to close, what is overdue or stuck in an early stage, and which deals "
        "need attention this week. Amounts are per currency: never add up different currencies."
    )


def complete_opportunity(ctx: ToolContext, value: str, arguments: dict[str, str]) -> list[str]:
    """The names of the workspace's opportunities starting with ``value`` (a range on the
    (workspace, name) index, a bounded number of rows)."""
    query = Opportunity.select(Opportunity.name).where(Opportunity.workspace == ctx.workspace_id)
    return prefix_values(query, Opportunity.name, value)  # as written: "Zor" finds "Zorblax Mega Deal"


@prompt(title="Review a deal", complete={"opportunity": complete_opportunity})
def review_deal(
    ctx: ToolContext,
    opportunity: Annotated[str, Field(min_length=1, max_length=200, description="The opportunity's name.")],
):
    """Review one opportunity: its stage, amount and close date, and what would move it forward."""
    rows = (
        Opportunity.select(Opportunity, Account.domain, Account.name.alias("account_name"))
        .join(Account, on=(Opportunity.account == Account.id))
        .where((Opportunity.workspace == ctx.workspace_id) & (Opportunity.name == opportunity))
        .order_by(Opportunity.close_date, Opportunity.id)
        .limit(5)
        .dicts()
    )
    found = cast(list[dict[str, Any]], list(rows))  # peewee's stubs type the rows of .dicts() as the model
    if not found:
        raise ToolError("opportunity", f"no opportunity named {opportunity!r} in this workspace")
    lines = [
        f"- #{o['id']} {o['name']} with {o['account_name']} ({o['domain']}): {o['stage']}, "
        f"{o['amount']} {o['currency']}, closing {o['close_date']}"
        for o in found
    ]
    return Message(
        "Review this deal:\n"
        + "\n".join(lines)
        + "\n\nIs the close date realistic for its stage? What is the next step, and who at the account "
        "should I talk to? Use get_account with the domain for its contacts and notes."
    )


PROMPTS = [quarter_pipeline, review_deal]
