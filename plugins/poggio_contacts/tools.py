"""Tools of the contacts pack: ``search_contacts`` and ``get_contact`` read, ``create_contact`` and
``update_contact`` write; the profile section, and the contacts notes link to."""

from __future__ import annotations

from typing import Annotated

from peewee import JOIN, fn
from pydantic import BaseModel, Field

from poggio import (
    Cursor,
    IfUnmodifiedSince,
    Limit,
    Page,
    SearchQuery,
    Timestamp,
    ToolContext,
    ToolError,
    ToolResult,
    changed_at,
    for_update,
    hookimpl,
    page_text,
    refuse_if_modified,
    replace_search_terms,
    search_page,
    tool,
)
from poggio.advanced import Prepared, slot
from poggio_accounts import Account, ProfileSection, account_id, account_of, normalise_domain
from poggio_contacts.models import SEARCH_KIND, Contact, insert_contacts, search_texts
from poggio_contacts.validation import clean_email, clean_fields

PROFILE_CONTACTS = 10


class ContactOut(BaseModel):
    id: int
    email: str
    first_name: str
    last_name: str
    title: str
    account_domain: str | None
    account_name: str | None
    updated_at: Timestamp | None = Field(
        description="When the contact last changed: pass it as if_unmodified_since to update_contact."
    )

    @classmethod
    def of(cls, c: Contact, account: Account | None = None) -> ContactOut:
        account = account or (c.account if c.account_id else None)
        return cls(
            id=c.id,
            email=c.email,
            first_name=c.first_name,
            last_name=c.last_name,
            title=c.title,
            account_domain=account.domain if account else None,
            account_name=account.name if account else None,
            updated_at=c.updated_at,
        )


class ContactPage(Page[ContactOut]):
    model_config = Page.items_as("contacts")


def _line(c: ContactOut) -> str:
    who = f"{c.first_name} {c.last_name}".strip() or c.email
    at = f" at {c.account_name} ({c.account_domain})" if c.account_domain else ""
    return f"- {who}, {c.title or 'no title'}{at} <{c.email}>"


def _with_account():
    return Contact.select(Contact, Account).join(Account, JOIN.LEFT_OUTER, on=(Contact.account == Account.id))


@tool(title="Search contacts")
def search_contacts(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(
            max_length=200,
            description="Words to find in the contact's name, e-mail or title; each word matches the start of a word. "
            "Empty lists all contacts.",
        ),
    ] = "",
    account_domain: Annotated[
        str | None,
        Field(max_length=253, description="Only contacts at the account with this domain, e.g. example.com."),
    ] = None,
    title: Annotated[
        str | None,
        Field(
            max_length=150,
            description="Only contacts whose job title contains this text, from the start of a word "
            '(case-insensitive): "sales" finds "VP Sales".',
        ),
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ToolResult[ContactPage]:
    """Search the workspace's contacts (people at accounts) by name, e-mail or title, optionally at
    one account. With a query, the closest matches come first (a word equal to a query word before
    longer words); without one, contacts are ordered by last name. Use next_cursor to page."""
    words = f"{query} {title}" if title else query
    # a plain peewee query (the simple API): search_page compiles it per call, which no benchmark
    # of this tool calls for (search_accounts shows the compiled-once way)
    q = _with_account().where(Contact.workspace == ctx.workspace_id)
    if account_domain:
        q = q.where(Contact.account == account_id(ctx, account_domain))
    if title:
        # the title's words go through the word index too (``words``), so a title few contacts hold
        # is found without reading every contact; this check keeps the exact ones
        q = q.where(fn.LOWER(Contact.title).contains(title.strip().lower()))
    filters = {"account": normalise_domain(account_domain or ""), "title": (title or "").strip().lower()}
    search = SearchQuery(
        q,
        Contact.id,
        SEARCH_KIND,
        order=[Contact.last_name, Contact.first_name, Contact.id],
        narrow=bool(account_domain),
    )
    rows, next_cursor = search_page(ctx, search, words, filters, cursor, limit)
    page = ContactPage(items=[ContactOut.of(c) for c in rows], next_cursor=next_cursor)
    return ToolResult(page, page_text(page, _line, "contact", first=cursor is None))


@tool(title="Get a contact")
def get_contact(
    ctx: ToolContext,
    email: Annotated[str, Field(min_length=3, max_length=254, description="The contact's e-mail address.")],
) -> ToolResult[ContactOut]:
    """One contact, found by e-mail address, with the account they work at."""
    wanted = email.strip().lower()
    contact = _with_account().where((Contact.workspace == ctx.workspace_id) & (Contact.email == wanted)).first()
    if contact is None:
        raise ToolError(
            "email", f"no contact with e-mail {wanted!r} in this workspace; search_contacts finds contacts by name"
        )
    out = ContactOut.of(contact)
    return ToolResult(out, _line(out)[2:])


# The first contacts of an account, each row carrying the account's total (a window count, taken
# before the LIMIT): one query for the profile section. Advanced API: every get_account runs it; see
# benchmarks/README.md, "MCP throughput against the bare SDK, SQLite" (get_account).
_PROFILE_CONTACTS = Prepared(
    lambda: (
        Contact.select(
            Contact.email,
            Contact.first_name,
            Contact.last_name,
            Contact.title,
            fn.COUNT(Contact.id).over().alias("total"),
        )
        .where((Contact.workspace == slot("workspace")) & (Contact.account == slot("account")))
        .order_by(Contact.last_name, Contact.first_name, Contact.id)
        .limit(PROFILE_CONTACTS)
        .tuples()
    ),
    plan_once=True,
)


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
    return ProfileSection(
        key="contacts",
        title=f"Contacts ({total})",
        data={"total": total, "contacts": people},
        text="\n".join(lines) or "No contacts.",
    )


@hookimpl
def poggio_note_link(ctx: ToolContext, account: Account, argument: str, value) -> str | None:
    if argument != "contact_email":
        return None
    email = str(value).strip().lower()
    contact = Contact.get_or_none((Contact.workspace == ctx.workspace_id) & (Contact.email == email))
    if contact is None or contact.account_id != account.id:
        raise ToolError("contact_email", f"no contact with e-mail {email!r} at {account.domain} in this workspace")
    return f"{contact.first_name} {contact.last_name}".strip() + f" <{contact.email}>"


Email = Annotated[str, Field(min_length=3, max_length=254, description="The contact's e-mail address.")]
_FIELDS = ("first_name", "last_name", "title")


# the contact a change is made to; callers queue for it in turn on PostgreSQL (see for_update).
# Advanced API in update_contact: see benchmarks/README.md, "Write tools" (round trips per call,
# held by tests/test_round_trips.py)
# the contact locked, with its account (if any) read in the same statement, not locked
_LOCKED = Prepared(
    lambda: for_update(
        Contact.select(Contact, Account)
        .join(Account, JOIN.LEFT_OUTER)
        .where((Contact.workspace == slot("workspace")) & (Contact.email == slot("email"))),
        key=fn.hashtext(slot("email")),
    )
)


@tool(title="Create a contact", read_only=False, idempotent=False)
def create_contact(
    ctx: ToolContext,
    email: Email,
    first_name: Annotated[str, Field(max_length=100, description="Given name.")],
    last_name: Annotated[str, Field(max_length=100, description="Family name.")],
    account_domain: Annotated[
        str,
        Field(min_length=1, max_length=253, description="The domain of the account they work at, e.g. example.com."),
    ],
    title: Annotated[str, Field(max_length=150, description="Job title, e.g. VP Sales.")] = "",
) -> ToolResult[ContactOut]:
    """Add a person at an account, by e-mail address (new in the workspace: update_contact changes
    one that exists)."""
    clean = clean_email(email)
    fields = clean_fields({"first_name": first_name, "last_name": last_name, "title": title})
    account = account_of(ctx, account_domain)
    by_email = (Contact.workspace == ctx.workspace_id) & (Contact.email == clean)
    if Contact.select().where(by_email).exists():
        raise ToolError("email", f"a contact with e-mail {clean} already exists; update_contact changes it")
    now = changed_at()
    insert_contacts(ctx.workspace_id, [{"email": clean, **fields, "account": account.id, "updated_at": now}], now)
    contact = Contact.get(by_email)
    out = ContactOut.of(contact, account)
    ctx.record_change(f"contact {clean}", None, {"email": clean, **fields, "account_domain": account.domain})
    ctx.changed(f"poggio://accounts/{account.domain}", f"poggio://accounts/{account.domain}/contacts")
    return ToolResult(out, f"Created {_line(out)[2:]}")


@tool(title="Update a contact", read_only=False, idempotent=True, destructive=True)
def update_contact(
    ctx: ToolContext,
    email: Email,
    first_name: Annotated[str | None, Field(max_length=100, description="A new given name.")] = None,
    last_name: Annotated[str | None, Field(max_length=100, description="A new family name.")] = None,
    title: Annotated[str | None, Field(max_length=150, description="A new job title (empty clears it).")] = None,
    account_domain: Annotated[
        str | None, Field(min_length=1, max_length=253, description="The domain of the account they now work at.")
    ] = None,
    if_unmodified_since: IfUnmodifiedSince = None,
) -> ToolResult[ContactOut]:
    """Change a contact's name, title or account, found by e-mail; fields left out stay as they are.
    Overwrites what is there: pass if_unmodified_since (its updated_at) so a change made since is not lost."""
    given = {
        k: v for k, v in {"first_name": first_name, "last_name": last_name, "title": title}.items() if v is not None
    }
    if not given and account_domain is None:
        raise ToolError(None, "give at least one field to change: first_name, last_name, title, account_domain")
    fields = clean_fields(given)
    new_account = account_of(ctx, account_domain) if account_domain is not None else None
    wanted = email.strip().lower()
    contact = _LOCKED.first(workspace=ctx.workspace_id, email=wanted)
    if contact is None:
        raise ToolError("email", f"no contact with e-mail {wanted!r} in this workspace; search_contacts finds contacts")
    account = contact.account if contact.account_id else None
    refuse_if_modified(contact.updated_at, if_unmodified_since, "contact", ContactOut.of(contact, account))
    before = {f: getattr(contact, f) for f in _FIELDS}
    before["account_domain"] = account.domain if account else None
    changes = {k: v for k, v in fields.items() if before[k] != v}
    if new_account is not None and new_account.id != contact.account_id:
        changes["account_domain"] = new_account.domain
        contact.account = new_account.id
        account = new_account
    if changes:
        for k in fields:
            if k in changes:
                setattr(contact, k, changes[k])
        contact.updated_at = changed_at(contact.updated_at)
        fields_changed = (
            [k for k in changes if k != "account_domain"]
            + (["account"] if "account_domain" in changes else [])
            + ["updated_at"]
        )
        Prepared.update_of(Contact, fields_changed).write_later(
            id=contact.id, **{f: contact.account_id if f == "account" else getattr(contact, f) for f in fields_changed}
        )
        if set(changes) & set(_FIELDS):
            replace_search_terms(SEARCH_KIND, ctx.workspace_id, contact.id, search_texts(contact))
        ctx.record_change(f"contact {contact.email}", {k: before[k] for k in changes}, changes)
        for moved in {d for d in (before.get("account_domain"), account.domain if account else None) if d}:
            ctx.changed(f"poggio://accounts/{moved}", f"poggio://accounts/{moved}/contacts")
    out = ContactOut.of(contact, account)
    what = ", ".join(changes) if changes else "nothing (the values were already so)"
    return ToolResult(out, f"Updated {what}: {_line(out)[2:]}")


@hookimpl
def poggio_tools():
    return [search_contacts, get_contact, create_contact, update_contact]
