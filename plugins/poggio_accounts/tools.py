"""Tools of the accounts pack: ``search_accounts`` and ``get_account`` read; ``create_account``,
``update_account`` and ``add_note`` write."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import peewee
from peewee import SQL, Value, fn
from pydantic import BaseModel, Field

from poggio import (
    MAX_ID,
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
    query_words,
    refuse_if_modified,
    replace_search_terms,
    search_page,
    tool,
)
from poggio.advanced import Prepared, loaded, row_values, slot
from poggio_accounts.hookspecs import ProfileSection
from poggio_accounts.models import SEARCH_KIND, Account, Note, find_account, insert_accounts, normalise_domain
from poggio_accounts.validation import clean_domain, clean_fields

PROFILE_NOTES = 10

log = logging.getLogger(__name__)


class AccountOut(BaseModel):
    id: int
    domain: str
    name: str
    industry: str
    employees: int | None
    country: str
    description: str
    updated_at: Timestamp | None = Field(
        description="When the account last changed: pass it as if_unmodified_since to update_account."
    )

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        # from the row's values by field name: reading them one by one through the field descriptors
        # cost more than validating them (see benchmarks/README.md, "MCP in process: where a request's time goes")
        return cls.model_validate(row_values(account))


class AccountPage(Page[AccountOut]):
    model_config = Page.items_as("accounts")


class Section(BaseModel):
    title: str
    pack: str
    data: dict[str, Any]


# add_note's two link arguments from before links were generic, and NoteOut's fields of the same
# names: the contacts and revenue packs' link kinds, kept because clients call and read them so
LEGACY_LINKS = ("contact_email", "opportunity_id")


class NoteOut(BaseModel):
    id: int
    text: str
    contact_email: str | None = Field(description="about's contact_email (the contacts pack's link), if any.")
    opportunity_id: int | None = Field(description="about's opportunity_id (the revenue pack's link), if any.")
    links: str = Field(description="What the note is about, as the reader's tool packs word it.")
    author: str
    created_at: Timestamp
    about: dict[str, str | int | None] = Field(
        default_factory=dict,
        description="The records the note is about, by link kind (e.g. contact_email, opportunity_id): null "
        "where the reader's tool packs may not read that record.",
    )

    @classmethod
    def of(cls, note: Note, about: dict[str, Any], labels: list[str]) -> NoteOut:
        legacy = {k: about.get(k) for k in LEGACY_LINKS}
        return cls(
            id=note.id,
            text=note.text,
            links="; ".join(labels),
            author=note.author,
            created_at=note.created_at,
            about=about,
            **legacy,
        )


def note_links(note: Note) -> list[dict[str, Any]]:
    """A note's links, ``{"kind", "value", "label"}`` each (``Note.links``)."""
    return json.loads(note.links) if note.links else []


class AccountProfile(BaseModel):
    account: AccountOut
    notes: list[NoteOut] = Field(default_factory=list, description="The newest notes on the account, newest first.")
    sections: dict[str, Section] = Field(description="What each tool pack in scope knows about the account.")


def _line(a: AccountOut) -> str:
    facts = ", ".join([x for x in (a.industry, f"{a.employees:,} employees" if a.employees else "", a.country) if x])
    return f"- {a.name} ({a.domain}): {facts}" if facts else f"- {a.name} ({a.domain})"


@tool(title="Search accounts")
def search_accounts(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(
            max_length=200,
            description="Words to find in the account's name or domain; each word matches the start of a word "
            '("acm ind" finds "Acme Industries"). Empty lists all accounts.',
        ),
    ] = "",
    industry: Annotated[
        str | None, Field(max_length=100, description="Only accounts in this industry (exact, case-insensitive).")
    ] = None,
    country: Annotated[
        str | None,
        Field(min_length=2, max_length=2, description="Only accounts in this country (ISO 3166 two-letter code)."),
    ] = None,
    min_employees: Annotated[
        int | None, Field(ge=0, le=10_000_000, description="Only accounts with at least this many employees.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ToolResult[AccountPage]:
    """Search the workspace's accounts (companies) by name or domain, with optional filters.
    With a query, the closest matches come first (a word equal to a query word before longer
    words); without one, accounts are ordered by name. Use next_cursor to page."""
    filters = {"industry": (industry or "").strip().lower(), "country": (country or "").upper(), "min": min_employees}
    # with search words the query is built with slots: each shape (which filters apply) is compiled
    # to SQL once; without, it is a keyset page in name order, built as is. Advanced API: see
    # benchmarks/README.md, "MCP throughput against the bare SDK, SQLite" (search_accounts) and
    # "Scale: queries at 1M accounts"
    values = {
        "workspace": ctx.workspace_id,
        "industry": filters["industry"],
        "country": filters["country"],
        "min": min_employees,
    }
    prepared = bool(query_words(query))
    value = slot if prepared else values.__getitem__
    q = Account.select().where(Account.workspace == value("workspace"))
    if industry:
        q = q.where(fn.LOWER(Account.industry) == value("industry"))
    if country:
        q = q.where(Account.country == value("country"))
    if min_employees is not None:
        q = q.where(Account.employees >= value("min"))
    shape = ("search_accounts", bool(industry), bool(country), min_employees is not None)
    search = SearchQuery(
        q, Account.id, SEARCH_KIND, order=[Account.name, Account.id], prepared=(shape, values) if prepared else None
    )
    rows, next_cursor = search_page(ctx, search, query, filters, cursor, limit)
    # validated as one page of the rows' values (AccountOut.of each, in one call)
    page = AccountPage.model_validate({"items": [row_values(a) for a in rows], "next_cursor": next_cursor})
    return ToolResult(page, page_text(page, _line, "account", first=cursor is None))


_ACCOUNT_FIELDS = Account._meta.sorted_fields
_NOTE_FIELDS: list[peewee.Field] = [Note.id, Note.text, Note.links, Note.author, Note.created_at]
_NULLS = (SQL("NULL"),)


def _with_notes():
    """The account with this domain and its newest notes, in one statement (one round trip on
    PostgreSQL): the account's row first (part 0), then a row per note (part 1), each padded with
    NULLs where the other's columns are.

    Advanced API (a UNION read by hand, compiled once, planned once on PostgreSQL): get_account is
    the hottest read; see benchmarks/README.md, "MCP throughput against the bare SDK, SQLite" and
    "The figures behind design decisions" (get_account's round trips on PostgreSQL, ten became four).
    A plain version is two queries: ``Account.get_or_none(...)`` and ``Note.select().where(...)``."""
    account = Account.select(Value(0), *_ACCOUNT_FIELDS, *_NULLS * len(_NOTE_FIELDS)).where(
        (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))
    )
    # the account's id as a scalar subquery, not a join: PostgreSQL then walks the notes' index of that
    # one account from the newest end, whatever it believes of the tables' sizes (with a join and
    # statistics from before the notes were written, it read every note of the workspace and sorted)
    found = Account.select(Account.id).where(
        (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))
    )
    notes = (
        Note.select(Value(1), *_NULLS * len(_ACCOUNT_FIELDS), *_NOTE_FIELDS)
        .where((Note.account == found) & (Note.workspace == slot("workspace")))
        .order_by(Note.created_at.desc(), Note.id.desc())
        .limit(PROFILE_NOTES)
    )
    return (account + notes).tuples()


_ACCOUNT_WITH_NOTES = Prepared(_with_notes, plan_once=True)


_ACCOUNT_NAMES = [f.name for f in _ACCOUNT_FIELDS]
_NOTE_READERS = [(f.name, f.python_value) for f in _NOTE_FIELDS]


def _account_and_notes(workspace_id: int, domain: str) -> tuple[Account | None, list[Note]]:
    rows = _ACCOUNT_WITH_NOTES.run(workspace=workspace_id, domain=domain)
    width = len(_ACCOUNT_FIELDS)
    # the union's columns are read as its first part's (the account's fields): the notes' by hand
    account = next(
        (loaded(Account, dict(zip(_ACCOUNT_NAMES, row[1 : width + 1], strict=True))) for row in rows if row[0] == 0),
        None,
    )
    notes = [
        loaded(Note, {name: read(v) for (name, read), v in zip(_NOTE_READERS, row[width + 1 :], strict=True)})
        for row in rows
        if row[0] == 1
    ]
    notes.sort(key=lambda n: (n.created_at, n.id), reverse=True)  # a union keeps no order
    return account, notes


@tool(title="Get an account's profile", app="ui://accounts/account-card.html")
def get_account(
    ctx: ToolContext,
    domain: Annotated[
        str,
        Field(
            min_length=1, max_length=253, description="The account's web domain, e.g. example.com (a URL works too)."
        ),
    ],
) -> ToolResult[AccountProfile]:
    """Everything the workspace knows about one account, found by its domain: the account itself,
    and a section from every tool pack in scope (its contacts, its revenue and opportunities, ...)."""
    wanted = normalise_domain(domain)
    if not wanted:
        raise ToolError("domain", "give a domain such as example.com")
    account, notes = _account_and_notes(ctx.workspace_id, wanted)
    if account is None:
        raise ToolError(
            "domain", f"no account with domain {wanted!r} in this workspace; search_accounts finds accounts by name"
        )
    out = AccountOut.of(account)
    sections = []
    for pack, section in ctx.call_hook("poggio_account_profile", ctx=ctx, account=account):
        if isinstance(section, ProfileSection):
            sections.append(section)
        else:
            log.error("tool pack %r returned %r from poggio_account_profile, not a ProfileSection", pack, section)
    shown = _notes_as_seen(ctx, account, notes)
    profile = AccountProfile(
        account=out,
        notes=shown,
        sections={s.key: Section(title=s.title, pack=s.key, data=s.data) for s in sections},
    )
    lines = [f"# {out.name} ({out.domain})", _line(out)[2:]]
    if out.description:
        lines.append(out.description)
    if shown:
        lines += ["", "## Notes"] + [_note_line(n) for n in shown]
    for s in sections:
        lines += ["", f"## {s.title}", s.text]
    return ToolResult(profile, "\n".join(lines))


OUT_OF_SCOPE = "a record outside this token's tool packs"


def _notes_as_seen(ctx: ToolContext, account: Account, notes: list[Note]) -> list[NoteOut]:
    """The notes with each link as the reader's packs word it now (``poggio_note_link``): a link
    to a record of a pack outside the reader's scope shows as an opaque reference and its value
    not at all, so a note never reveals what its reader may not read through that pack. (The
    label stored with a note is what its writer could read.)"""
    parsed = [(note, note_links(note)) for note in notes]
    labels: dict[tuple[str, Any], str | None] = {}
    for kind, value in dict.fromkeys((link["kind"], link["value"]) for _, links in parsed for link in links):
        try:
            answers = ctx.call_hook("poggio_note_link", ctx=ctx, account=account, argument=kind, value=value)
        except ToolError:  # its pack no longer finds the record
            answers = []
        labels[(kind, value)] = str(answers[0][1]) if answers else None
    shown = []
    for note, links in parsed:
        words, about = [], {}
        for link in links:
            label = labels.get((link["kind"], link["value"]))
            words.append(label or OUT_OF_SCOPE)
            about[link["kind"]] = link["value"] if label else None
        shown.append(NoteOut.of(note, about, words))
    return shown


def _note_line(n: NoteOut) -> str:
    about = f" (about {n.links})" if n.links else ""
    by = f" by {n.author}" if n.author else ""
    return f"- {n.created_at:%Y-%m-%d %H:%M}{by}{about}: {n.text}"


Domain = Annotated[str, Field(min_length=1, max_length=253, description="The account's web domain, e.g. example.com.")]
_FIELDS = ("name", "industry", "employees", "country", "description")


def _fields(account: Account) -> dict[str, Any]:
    return {f: getattr(account, f) for f in _FIELDS}


# the account a change is made to; callers queue for it in turn on PostgreSQL (see for_update).
# Advanced API in the write tools: see benchmarks/README.md, "Write tools" (add_note, update_account;
# tests/test_round_trips.py holds their round trips)
_LOCKED = Prepared(
    lambda: for_update(
        Account.select().where((Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))),
        key=fn.hashtext(slot("domain")),
    )
)
_INSERT_NOTE = Prepared.insert_into(Note)


def _locked_account(ctx: ToolContext, domain: str) -> Account:
    wanted = normalise_domain(domain)
    account = _LOCKED.first(workspace=ctx.workspace_id, domain=wanted)
    if account is None:
        raise ToolError(
            "domain", f"no account with domain {wanted!r} in this workspace; search_accounts finds accounts by name"
        )
    return account


@tool(title="Create an account", read_only=False, idempotent=False)
def create_account(
    ctx: ToolContext,
    domain: Domain,
    name: Annotated[str, Field(max_length=200, description="The company's name.")],
    industry: Annotated[str, Field(max_length=100, description="Its industry, e.g. Software.")] = "",
    employees: Annotated[int | None, Field(ge=0, le=10_000_000, description="How many people work there.")] = None,
    country: Annotated[str, Field(max_length=2, description="ISO 3166 two-letter country code, e.g. US.")] = "",
    description: Annotated[str, Field(max_length=5000, description="What the company does.")] = "",
) -> ToolResult[AccountOut]:
    """Create an account (a company) with its web domain and name. The domain must be new in the
    workspace: use update_account to change an account that exists."""
    clean = clean_domain(domain)
    fields = clean_fields(
        {"name": name, "industry": industry, "employees": employees, "country": country, "description": description}
    )
    if find_account(ctx.workspace_id, clean) is not None:
        raise ToolError("domain", f"an account with domain {clean} already exists; update_account changes it")
    now = changed_at()
    insert_accounts(ctx.workspace_id, [{"domain": clean, **fields}], now)
    account = find_account(ctx.workspace_id, clean)
    assert account is not None, "the account just inserted"
    out = AccountOut.of(account)
    ctx.record_change(f"account {clean}", None, {"domain": clean, **fields})
    ctx.changed(f"poggio://accounts/{clean}")
    return ToolResult(out, f"Created {_line(out)[2:]}")


@tool(title="Update an account", read_only=False, idempotent=True, destructive=True)
def update_account(
    ctx: ToolContext,
    domain: Domain,
    name: Annotated[str | None, Field(max_length=200, description="A new name.")] = None,
    industry: Annotated[str | None, Field(max_length=100, description="A new industry (empty clears it).")] = None,
    employees: Annotated[int | None, Field(ge=0, le=10_000_000, description="A new head count.")] = None,
    country: Annotated[str | None, Field(max_length=2, description="A new ISO 3166 two-letter country code.")] = None,
    description: Annotated[str | None, Field(max_length=5000, description="A new description.")] = None,
    if_unmodified_since: IfUnmodifiedSince = None,
) -> ToolResult[AccountOut]:
    """Change an account's fields, found by its domain; fields left out stay as they are. Overwrites
    what is there: pass if_unmodified_since (its updated_at) so a change made since is not lost."""
    given = {
        k: v
        for k, v in {
            "name": name,
            "industry": industry,
            "employees": employees,
            "country": country,
            "description": description,
        }.items()
        if v is not None
    }
    if not given:
        raise ToolError(None, f"give at least one field to change: {', '.join(_FIELDS)}")
    fields = clean_fields(given)
    account = _locked_account(ctx, domain)
    refuse_if_modified(account.updated_at, if_unmodified_since, "account", AccountOut.of(account))
    before = _fields(account)
    changes = {k: v for k, v in fields.items() if before[k] != v}
    if changes:
        for k, v in changes.items():
            setattr(account, k, v)
        account.updated_at = changed_at(account.updated_at)
        Prepared.update_of(Account, [*changes, "updated_at"]).write_later(
            id=account.id, updated_at=account.updated_at, **changes
        )
        if "name" in changes:
            replace_search_terms(SEARCH_KIND, ctx.workspace_id, account.id, (account.name, account.domain))
        ctx.record_change(f"account {account.domain}", {k: before[k] for k in changes}, changes)
        ctx.changed(f"poggio://accounts/{account.domain}")
    out = AccountOut.of(account)
    what = ", ".join(changes) if changes else "nothing (the values were already so)"
    return ToolResult(out, f"Updated {what}: {_line(out)[2:]}")


@tool(title="Add a note to an account", read_only=False, idempotent=False)
def add_note(
    ctx: ToolContext,
    domain: Domain,
    text: Annotated[str, Field(min_length=1, max_length=5000, description="The note: what happened, what was agreed.")],
    contact_email: Annotated[
        str | None, Field(max_length=254, description="Optional: the contact (at this account) it is about.")
    ] = None,
    opportunity_id: Annotated[
        int | None,
        Field(ge=1, le=MAX_ID, description="Optional: the id of the opportunity (of this account) it is about."),
    ] = None,
    about: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=64)],
            Annotated[str, Field(min_length=1, max_length=254)] | Annotated[int, Field(ge=1, le=MAX_ID)],
        ]
        | None,
        Field(
            max_length=8,
            description="Optional: other records (of this account) it is about, by link kind, e.g. "
            '{"contact_email": "ada@example.com", "opportunity_id": 12}; the tool packs in scope each know '
            "their own kinds.",
        ),
    ] = None,
) -> ToolResult[NoteOut]:
    """Write a note on an account (a call, a meeting, what was agreed), optionally about one of its
    contacts or opportunities, or another pack's records (about). Notes show in get_account, newest first."""
    body = text.strip()
    if not body:
        raise ToolError("text", "write something: the note is empty")
    wanted: dict[str, str | int] = {k: v.strip() if isinstance(v, str) else v for k, v in (about or {}).items()}
    legacy = (contact_email and contact_email.strip().lower(), opportunity_id)
    for kind, value in zip(LEGACY_LINKS, legacy, strict=True):
        if value is None or value == "":
            continue
        if wanted.get(kind, value) != value:
            raise ToolError(kind, f"given twice, differently: as {kind} and in about")
        wanted[kind] = value
    account = _locked_account(ctx, domain)
    links = []
    for kind, value in wanted.items():
        asked = ctx.call_hook("poggio_note_link", ctx=ctx, account=account, argument=kind, value=value)
        answers = [label for _, label in asked]
        if not answers:
            raise ToolError(kind, "no tool pack in this token's scope knows it; leave it out")
        links.append({"kind": kind, "value": value, "label": str(answers[0])})
    values = {
        "workspace": ctx.workspace_id,
        "account": account.id,
        "text": body,
        "links": json.dumps(links),
        "author": ctx.caller[:254],
        "created_at": changed_at(),
    }
    note = loaded(Note, {"id": _INSERT_NOTE.write(**values), **values})
    out = NoteOut.of(note, dict(wanted), [str(link["label"]) for link in links])
    ctx.changed(f"poggio://accounts/{account.domain}")
    ctx.record_change(f"note on account {account.domain}", None, {"text": body, "about": wanted})
    return ToolResult(out, f"Noted on {account.name} ({account.domain}): {body}")


@hookimpl
def poggio_tools():
    return [search_accounts, get_account, create_account, update_account, add_note]
