"""Word-prefix search (poggio.search_page) through the search tools, on SQLite and on PostgreSQL.

Every query is checked against an oracle computed in Python from the same rows: paging through
all pages gives exactly the matching rows, each once, whichever way the database walks (a query
word's index, or the rows an account filter leaves).
"""

from __future__ import annotations

import pytest
from instances import BACKENDS, drop_instance, make_instance

from poggio.commands import demo
from poggio.runtime import search
from poggio.runtime.packs import CursorCodec
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.results import ToolError
from poggio.runtime.schema import upgrade
from poggio.storage.db import utcnow
from poggio_accounts.models import Account, insert_accounts
from poggio_contacts.models import Contact, insert_contacts


@pytest.fixture(scope="module", params=BACKENDS)
def workspace(request, tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp(f"search-{request.param}"), request.param)
    db = inst.activate()
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        ws = demo.build(registry, "acme", accounts=150, seed=3).workspace
        insert_accounts(
            ws.id,
            [
                {"domain": "web.example", "name": "Web", "industry": "Media", "country": "DE"},
                {"domain": "webber.example", "name": "Webber Webworks", "industry": "Media", "country": "DE"},
                {"domain": "ada-adams.example", "name": "Ada Adams Advisory", "industry": "Software", "country": "GB"},
            ],
            utcnow(),
        )
        other = demo.build(registry, "globex", accounts=30, seed=4).workspace
        insert_contacts(
            other.id,
            [
                {
                    "account": None,
                    "email": "acme.spy@globex.example",
                    "first_name": "Acme",
                    "last_name": "Spy",
                    "title": "CEO",
                }
            ],
            utcnow(),
        )
    db.connect(reuse_if_open=True)
    yield registry, ws.id
    db.close()
    drop_instance(inst)


def call(registry, workspace_id, tool, **args):
    ctx = registry.tool_context(CursorCodec(b"search-test-key"), workspace_id, None, None, tool)
    return registry.tool(tool).fn(ctx, **args)


def walk(registry, workspace_id, tool, key, **args):
    """Every page of a search, in order: [(page items)...]."""
    pages, cursor = [], None
    while True:
        result = call(registry, workspace_id, tool, **args, **({"cursor": cursor} if cursor else {}))
        data = result.data.model_dump(by_alias=True)
        pages.append(data[key])
        cursor = data["next_cursor"]
        if not cursor:
            return pages


def matches(query: str, *texts: str) -> bool:
    terms = [t for text in texts for t in search.words(text)]
    return all(any(t.startswith(w) for t in terms) for w in search.query_words(query))


ACCOUNT_QUERIES = [
    "acme",
    "a",
    "ac la",
    "labs acme",
    "web",
    "webb",
    "ada adams",
    "ad ad",
    "1",
    "acme 1",
    "com example",
    "zzz",
    "ACMÉ",
    "e x a m p l e",
]


@pytest.mark.parametrize("query", ACCOUNT_QUERIES)
def test_account_search_pages_give_every_match_once(workspace, query):
    registry, ws = workspace
    expected = {a.domain for a in Account.select().where(Account.workspace == ws) if matches(query, a.name, a.domain)}
    pages = walk(registry, ws, "search_accounts", "accounts", query=query, limit=4)
    got = [a["domain"] for page in pages for a in page]
    assert len(got) == len(set(got)) and set(got) == expected
    assert all(len(page) == 4 for page in pages[:-1])


CONTACT_QUERIES = ["elena", "e", "weber elena", "a a", "ceo", "example com", "vp sales", "acme", "x"]


@pytest.mark.parametrize("query", CONTACT_QUERIES)
@pytest.mark.parametrize("at", [None, "example.com"])
def test_contact_search_pages_give_every_match_once(workspace, query, at):
    """With an account the database goes from that account's contacts; without, from the words."""
    registry, ws = workspace
    rows = Contact.select().where(Contact.workspace == ws)
    if at:
        rows = rows.join(Account).where(Account.domain == at)
    expected = {c.email for c in rows if matches(query, c.first_name, c.last_name, c.email, c.title)}
    pages = walk(registry, ws, "search_contacts", "contacts", query=query, limit=1 if at else 3, account_domain=at)
    got = [c["email"] for page in pages for c in page]
    assert len(got) == len(set(got)) and set(got) == expected
    assert "acme.spy@globex.example" not in got  # the other workspace's contact matches "acme" and "ceo"


@pytest.mark.parametrize("title", ["sales", "VP Sales", "manager", "of proc", "ceo", "zzz", "&"])
@pytest.mark.parametrize("query", ["", "e", "elena"])
def test_title_filter_pages_give_every_match_once(workspace, title, query):
    registry, ws = workspace
    expected = {
        c.email
        for c in Contact.select().where(Contact.workspace == ws)
        if title.lower() in c.title.lower() and matches(f"{query} {title}", c.first_name, c.last_name, c.email, c.title)
    }
    pages = walk(registry, ws, "search_contacts", "contacts", query=query, title=title, limit=5)
    got = [c["email"] for page in pages for c in page]
    assert len(got) == len(set(got)) and set(got) == expected


def test_closest_words_come_first_then_oldest(workspace):
    registry, ws = workspace
    web = call(registry, ws, "search_accounts", query="web", limit=100).data.items
    assert [a.domain for a in web] == ["web.example", "webber.example"]  # "web" itself before "webber"
    acme = call(registry, ws, "search_accounts", query="acme", limit=100).data.items
    assert [a.id for a in acme] == sorted(a.id for a in acme)  # same word: oldest first
    everyone = call(registry, ws, "search_accounts", limit=100).data.items
    assert [a.name for a in everyone] == sorted(a.name for a in everyone)  # no query: by name


def test_a_row_matching_one_word_twice_comes_once(workspace):
    """ "Ada Adams Advisory" has three words starting with "ad": one row, under "ada"."""
    registry, ws = workspace
    found = [a.domain for a in call(registry, ws, "search_accounts", query="ad", limit=100).data.items]
    assert found.count("ada-adams.example") == 1


def test_cursors_belong_to_their_query(workspace):
    registry, ws = workspace
    first = call(registry, ws, "search_accounts", query="acme", limit=2).data
    assert first.next_cursor
    for other in ({"query": "acme labs"}, {"query": ""}, {"query": "acme", "country": "DE"}):
        with pytest.raises(ToolError) as refused:
            call(registry, ws, "search_accounts", limit=2, cursor=first.next_cursor, **other)
        assert refused.value.field == "cursor"
    listing = call(registry, ws, "search_accounts", limit=2).data.next_cursor  # a name-ordered position
    with pytest.raises(ToolError):
        call(registry, ws, "search_accounts", limit=2, cursor=listing, query="acme")


@pytest.mark.parametrize("workspace", ["sqlite"], indirect=True)  # SQLite's plan; PostgreSQL's follows its statistics
def test_each_word_check_is_one_seek_in_a_covering_index(workspace):
    """A search checks every row it walks for its other words, and for an earlier word in the range,
    by the row's id: on SQLite each such check must read the (kind, ref_id, term) index alone, not
    every word row of that id (which made the check a read per word of the row)."""
    from poggio.storage.db import database
    from poggio.storage.prepared import Slot

    registry, ws = workspace
    search._PREPARED.clear()
    call(registry, ws, "search_accounts", query="acme labs", limit=3)
    (prepared,) = search._PREPARED.values()
    _, sql, params, _ = prepared._compile()
    bound = ["x" if isinstance(p, Slot) else p for p in params]
    plan = [row[-1] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, bound)]
    checks = [step for step in plan if "earlier" in step or "also" in step]
    assert len(checks) == 2, plan
    assert all(
        "COVERING INDEX search_term_kind_ref_id_term (kind=? AND ref_id=? AND term>? AND term<?)" in step
        for step in checks
    ), plan
