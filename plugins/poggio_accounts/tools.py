"""Tools of the accounts pack: ``search_accounts`` and ``get_account``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from peewee import fn
from pydantic import BaseModel, Field

from poggio import Cursor, Limit, Page, ToolContext, ToolError, ToolResult, hookimpl, page_text, search_page, tool
from poggio_accounts.hookspecs import ProfileSection
from poggio_accounts.models import SEARCH_KIND, Account, find_account, normalise_domain

log = logging.getLogger(__name__)


class AccountOut(BaseModel):
    id: int
    domain: str
    name: str
    industry: str
    employees: int | None
    country: str
    description: str

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(id=account.id, domain=account.domain, name=account.name, industry=account.industry,
                   employees=account.employees, country=account.country, description=account.description)


AccountPage = Page.of(AccountOut, "accounts")


class Section(BaseModel):
    title: str
    pack: str
    data: dict[str, Any]


class AccountProfile(BaseModel):
    account: AccountOut
    sections: dict[str, Section] = Field(description="What each tool pack in scope knows about the account.")


def _line(a: AccountOut) -> str:
    facts = ", ".join(x for x in (a.industry, f"{a.employees:,} employees" if a.employees else "", a.country) if x)
    return f"- {a.name} ({a.domain})" + (f": {facts}" if facts else "")


@tool(title="Search accounts")
def search_accounts(
    ctx: ToolContext,
    query: Annotated[str, Field(max_length=200, description="Words to find in the account's name or domain; each word matches the start of a word (\"acm ind\" finds \"Acme Industries\"). Empty lists all accounts.")] = "",
    industry: Annotated[str | None, Field(max_length=100, description="Only accounts in this industry (exact, case-insensitive).")] = None,
    country: Annotated[str | None, Field(min_length=2, max_length=2, description="Only accounts in this country (ISO 3166 two-letter code).")] = None,
    min_employees: Annotated[int | None, Field(ge=0, le=10_000_000, description="Only accounts with at least this many employees.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> AccountPage:
    """Search the workspace's accounts (companies) by name or domain, with optional filters.
    With a query, the closest matches come first (a word equal to a query word before longer
    words); without one, accounts are ordered by name. Use next_cursor to page."""
    q = Account.select().where(Account.workspace == ctx.workspace_id)
    if industry:
        q = q.where(fn.LOWER(Account.industry) == industry.strip().lower())
    if country:
        q = q.where(Account.country == country.upper())
    if min_employees is not None:
        q = q.where(Account.employees >= min_employees)
    filters = {"industry": (industry or "").strip().lower(), "country": (country or "").upper(), "min": min_employees}
    rows, next_cursor = search_page(ctx, q, Account.id, SEARCH_KIND, query, filters, cursor, limit,
                                    order=[Account.name, Account.id])
    page = AccountPage(items=[AccountOut.of(a) for a in rows], next_cursor=next_cursor)
    return ToolResult(page, page_text(page, _line, "account", first=cursor is None))


@tool(title="Get an account's profile")
def get_account(
    ctx: ToolContext,
    domain: Annotated[str, Field(min_length=1, max_length=253, description="The account's web domain, e.g. example.com (a URL works too).")],
) -> AccountProfile:
    """Everything the workspace knows about one account, found by its domain: the account itself,
    and a section from every tool pack in scope (its contacts, its revenue and opportunities, ...)."""
    wanted = normalise_domain(domain)
    if not wanted:
        raise ToolError("domain", "give a domain such as example.com")
    account = find_account(ctx.workspace_id, wanted)
    if account is None:
        raise ToolError("domain", f"no account with domain {wanted!r} in this workspace; search_accounts finds accounts by name")
    out = AccountOut.of(account)
    sections = []
    for pack, section in ctx.call_hook("poggio_account_profile", ctx=ctx, account=account):
        if isinstance(section, ProfileSection):
            sections.append(section)
        else:
            log.error("tool pack %r returned %r from poggio_account_profile, not a ProfileSection", pack, section)
    profile = AccountProfile(
        account=out,
        sections={s.key: Section(title=s.title, pack=s.key, data=s.data) for s in sections},
    )
    lines = [f"# {out.name} ({out.domain})", _line(out)[2:]]
    if out.description:
        lines.append(out.description)
    for s in sections:
        lines += ["", f"## {s.title}", s.text]
    return ToolResult(profile, "\n".join(lines))


@hookimpl
def poggio_tools():
    return [search_accounts, get_account]
