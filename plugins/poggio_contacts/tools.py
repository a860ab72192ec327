"""Tools of the contacts pack: ``search_contacts`` and ``get_contact``, and the profile section."""

from __future__ import annotations

from typing import Annotated

from peewee import JOIN, fn
from pydantic import BaseModel, Field

from poggio import (
    Cursor,
    Limit,
    Page,
    Prepared,
    ToolContext,
    ToolError,
    ToolResult,
    hookimpl,
    page_text,
    search_page,
    slot,
    tool,
)
from poggio_accounts import Account, ProfileSection, account_id, normalise_domain
from poggio_contacts.models import SEARCH_KIND, Contact

PROFILE_CONTACTS = 10


class ContactOut(BaseModel):
    id: int
    email: str
    first_name: str
    last_name: str
    title: str
    account_domain: str | None
    account_name: str | None

    @classmethod
    def of(cls, c: Contact) -> ContactOut:
        account = c.account if c.account_id else None
        return cls(id=c.id, email=c.email, first_name=c.first_name, last_name=c.last_name, title=c.title,
                   account_domain=account.domain if account else None, account_name=account.name if account else None)


ContactPage = Page.of(ContactOut, "contacts")


def _line(c: ContactOut) -> str:
    who = f"{c.first_name} {c.last_name}".strip() or c.email
    at = f" at {c.account_name} ({c.account_domain})" if c.account_domain else ""
    return f"- {who}, {c.title or 'no title'}{at} <{c.email}>"


def _with_account():
    return Contact.select(Contact, Account).join(Account, JOIN.LEFT_OUTER, on=(Contact.account == Account.id))


@tool(title="Search contacts")
def search_contacts(
    ctx: ToolContext,
    query: Annotated[str, Field(max_length=200, description="Words to find in the contact's name, e-mail or title; each word matches the start of a word. Empty lists all contacts.")] = "",
    account_domain: Annotated[str | None, Field(max_length=253, description="Only contacts at the account with this domain, e.g. example.com.")] = None,
    title: Annotated[str | None, Field(max_length=150, description="Only contacts whose job title contains this text, from the start of a word (case-insensitive): \"sales\" finds \"VP Sales\".")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ContactPage:
    """Search the workspace's contacts (people at accounts) by name, e-mail or title, optionally at
    one account. With a query, the closest matches come first (a word equal to a query word before
    longer words); without one, contacts are ordered by last name. Use next_cursor to page."""
    q = _with_account().where(Contact.workspace == ctx.workspace_id)
    if account_domain:
        q = q.where(Contact.account == account_id(ctx, account_domain))
    words = query
    if title:
        q = q.where(fn.LOWER(Contact.title).contains(title.strip().lower()))
        # the title's words go through the word index too, so a title few contacts hold is found
        # without reading every contact; the check above keeps the exact ones
        words = f"{query} {title}"
    filters = {"account": normalise_domain(account_domain or ""), "title": (title or "").strip().lower()}
    rows, next_cursor = search_page(ctx, q, Contact.id, SEARCH_KIND, words, filters, cursor, limit,
                                    order=[Contact.last_name, Contact.first_name, Contact.id],
                                    narrow=bool(account_domain))
    page = ContactPage(items=[ContactOut.of(c) for c in rows], next_cursor=next_cursor)
    return ToolResult(page, page_text(page, _line, "contact", first=cursor is None))


@tool(title="Get a contact")
def get_contact(
    ctx: ToolContext,
    email: Annotated[str, Field(min_length=3, max_length=254, description="The contact's e-mail address.")],
) -> ContactOut:
    """One contact, found by e-mail address, with the account they work at."""
    wanted = email.strip().lower()
    contact = _with_account().where((Contact.workspace == ctx.workspace_id) & (Contact.email == wanted)).first()
    if contact is None:
        raise ToolError("email", f"no contact with e-mail {wanted!r} in this workspace; search_contacts finds contacts by name")
    out = ContactOut.of(contact)
    return ToolResult(out, _line(out)[2:])


# The first contacts of an account, each row carrying the account's total (a window count, taken
# before the LIMIT): one query for the profile section.
_PROFILE_CONTACTS = Prepared(lambda: (
    Contact.select(Contact.email, Contact.first_name, Contact.last_name, Contact.title,
                   fn.COUNT(Contact.id).over().alias("total"))
    .where((Contact.workspace == slot("workspace")) & (Contact.account == slot("account")))
    .order_by(Contact.last_name, Contact.first_name, Contact.id)
    .limit(PROFILE_CONTACTS)
    .tuples()
))


@hookimpl
def poggio_account_profile(ctx: ToolContext, account: Account) -> ProfileSection:
    shown = _PROFILE_CONTACTS.all(workspace=ctx.workspace_id, account=account.id)
    total = shown[0][4] if shown else 0
    people = [
        {"email": email, "first_name": first, "last_name": last, "title": title}
        for email, first, last, title, _ in shown
    ]
    lines = [f"- {p['first_name']} {p['last_name']}, {p['title'] or 'no title'} <{p['email']}>" for p in people]
    if total > len(shown):
        lines.append(f"… and {total - len(shown)} more (search_contacts with account_domain={account.domain}).")
    return ProfileSection(key="contacts", title=f"Contacts ({total})",
                          data={"total": total, "contacts": people}, text="\n".join(lines) or "No contacts.")


@hookimpl
def poggio_tools():
    return [search_contacts, get_contact]
