"""Word-prefix search that works the same on SQLite and PostgreSQL, through one B-tree index.

Searchable text (an account's name and domain, a contact's name and e-mail, ...) is split into
normalised words stored in ``search_term`` next to the row they point at. A query matches the rows
that have, for every query word, a stored word starting with it: "acm ind" finds "Acme Industries".
Results come closest match first: a stored word equal to the query word before longer ones, then
oldest first (:func:`search_page`); every page is a walk down the index that stops when the page is full.
Normalisation keeps letters and digits only (accents folded, case folded), so the range scan
``term >= w AND term < w + U+10FFFF`` is a prefix match under any collation and no user input ever
reaches a LIKE pattern or an FTS query parser.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import SQL, CharField, Field, IntegerField, Tuple, fn

from poggio.runtime.packs import ToolContext
from poggio.runtime.paging import keyset_page
from poggio.storage.models import WorkspaceModel
from poggio.storage.prepared import Prepared, slot

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERM = 40
MAX_QUERY_WORDS = 6
_TOP = "\U0010ffff"


class SearchTerm(WorkspaceModel):
    kind = CharField(max_length=32)
    term = CharField(max_length=MAX_TERM)
    ref_id = IntegerField()

    class Meta:
        indexes = (
            (("workspace", "kind", "term", "ref_id"), False),
            (("kind", "ref_id", "term"), False),
        )


def words(text: str | None) -> list[str]:
    """The normalised words of ``text``, in order, each cut to ``MAX_TERM`` characters."""
    if not text:
        return []
    if text.isascii():  # no accents to fold, and casefold is lower: the common case, 5x cheaper
        return [w[:MAX_TERM] for w in _WORD.findall(text.lower())]
    folded = unicodedata.normalize("NFKD", text).casefold()
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w[:MAX_TERM] for w in _WORD.findall(folded)]


def add_search_terms(
    kind: str,
    workspace_id: int,
    entries: Iterable[tuple[int, Iterable[str | None]]],
    batch: int = 5000,
    later: bool = False,
) -> None:
    """Make new rows findable by :func:`search_page`: ``entries`` are ``(row id, texts)`` of the
    workspace's rows of ``kind`` (a name of the pack's choosing, such as ``"account"``). Call it in the
    transaction that inserts the rows; the terms go when their workspace does. Written in batches of
    plain rows on the cursor (:mod:`poggio.storage.bulk`): an import or the demo writes millions. ``later``:
    a tool's few, sent with the transaction's next statement (:func:`poggio.storage.db.write_later`)."""
    from poggio.storage import bulk

    def rows():
        for ref_id, texts in entries:
            terms: set[str] = set()
            for text in texts:
                terms.update(words(text))
            for term in terms:
                yield term, ref_id

    bulk.insert_rows(
        SearchTerm,
        [SearchTerm.term, SearchTerm.ref_id],
        rows(),
        batch=batch,
        same={SearchTerm.workspace: int(workspace_id), SearchTerm.kind: kind},
        later=later,
    )


_TERMS_OF = Prepared(
    lambda: SearchTerm.delete().where(
        (SearchTerm.workspace == slot("workspace"))
        & (SearchTerm.kind == slot("kind"))
        & (SearchTerm.ref_id == slot("ref_id"))
    )
)


def replace_search_terms(kind: str, workspace_id: int, ref_id: int, texts: Iterable[str | None]) -> None:
    """A changed row's words in place of its old ones (a renamed account is found by its new name,
    no longer by the old); in the transaction that changes the row."""
    _TERMS_OF.write_later(workspace=workspace_id, kind=kind, ref_id=ref_id)
    add_search_terms(kind, workspace_id, [(ref_id, texts)], later=True)


def query_words(text: str | None) -> list[str]:
    """The distinct words a search for ``text`` looks for (at most ``MAX_QUERY_WORDS``)."""
    return list(dict.fromkeys(words(text)))[:MAX_QUERY_WORDS]


def _starts_with(term, word):
    """``term`` starts with ``word``: a str, or a :class:`_Word` (the name of two slots)."""
    if isinstance(word, _Word):
        return (term >= slot(word.name)) & (term < slot(word.name + "_top"))
    return (term >= word) & (term < word + _TOP)


class _Word:
    """A query word in a prepared search: the slots ``name`` and ``name_top`` bound at each run."""

    def __init__(self, name: str):
        self.name = name


def _word_values(name: str, word: str) -> dict[str, str]:
    return {name: word, name + "_top": word + _TOP}


_PREPARED: dict[tuple, Prepared] = {}  # search shapes compiled once (a shape fixes the SQL, values vary)


COUNT_CAP = 2000
_COUNT = Prepared(
    lambda: (
        SearchTerm.select(fn.COUNT(SQL("*")))
        .from_(
            SearchTerm.select(SearchTerm.ref_id)
            .where(
                (SearchTerm.workspace == slot("workspace"))
                & (SearchTerm.kind == slot("kind"))
                & _starts_with(SearchTerm.term, _Word("_w"))
            )
            .limit(COUNT_CAP)
        )
        .tuples()
    )
)


def _lead(kind: str, workspace_id: int, query: list[str]) -> int:
    """Which word's matches to walk: the one with the fewest (counted up to ``COUNT_CAP``), the longest on a tie."""
    if len(query) == 1:
        return 0
    counts = [_COUNT.first(workspace=workspace_id, kind=kind, **_word_values("_w", w))[0] for w in query]
    return min(range(len(query)), key=lambda i: (counts[i], -len(query[i]), i))


@dataclass(frozen=True)
class SearchQuery:
    """What a search tool searches, for :func:`search_page`.

    ``query``: a select of ``id_field``'s model (e.g. ``Account.select()``), already scoped to
    ``ctx.workspace_id`` and narrowed by the call's filters; ``id_field`` its key (``Account.id``);
    ``kind`` the name its rows' words were indexed under (:func:`add_search_terms`); ``order`` the
    page's order when the call has no search words (keyset pagination, the key last).

    ``narrow``: ``query``'s own filters already leave few rows (e.g. the contacts of one account), so
    those rows are each checked for the words, instead of walking the words' index.

    ``prepared`` (advanced, see docs/pack-authors/advanced.md): ``(shape, values)`` when ``query`` is
    built with :func:`poggio.advanced.slot` placeholders for ``values``, and ``shape`` (hashable, unique
    to the tool) names everything else that changes its SQL (which filters apply). A search of that
    shape is then compiled to SQL once and run with new values; without it, every search is compiled
    anew, which costs tens of microseconds and matters only to a tool a benchmark shows busy."""

    query: Any
    id_field: Field
    kind: str
    order: Sequence[Any]
    narrow: bool = False
    prepared: tuple[Hashable, dict[str, Any]] | None = None


def search_page(
    ctx: ToolContext,
    search: SearchQuery,
    text: str | None,
    filters: dict[str, Any],
    cursor: str | None,
    limit: int,
) -> tuple[list[Any], str | None]:
    """One page of ``search`` for the search words in ``text``: ``(rows, next_cursor)``. ``filters``
    are the call's other arguments (a cursor is refused by a call with other filters or other words);
    ``cursor`` and ``limit`` the call's own (:data:`poggio.Cursor`, :data:`poggio.Limit`).

    Without searchable words in ``text``, the rows ordered by ``order`` (keyset pagination).
    With words, the rows of ``kind`` that have a word starting with each of them, best match first:
    ordered by the word that matched one query word (the rarest), then by id, so a word equal to
    the query word comes before longer ones. Each row comes once, under its first matching word.

    The database walks the index of that query word's matches in this order and checks each row
    for the other words by its id, so a page costs the rows walked to fill it, not the size of the
    workspace: a common word is as cheap as a rare one. The worst case is words each common but
    rare together ("elena weber acme"): the walk then reads the lead word's matches to the end.
    When ``query``'s own filters already leave few rows (``narrow``, e.g. the contacts of one
    account), it goes the other way: those rows, each checked for the words. A cursor carries the
    word walked, so the next page walks the same one even if the counts changed meanwhile.
    """
    query, id_field, kind, narrow, prepared = search.query, search.id_field, search.kind, search.narrow, search.prepared
    wanted = query_words(text)
    filters = {**filters, "search words": wanted}
    if not wanted:
        return keyset_page(ctx, query, search.order, filters, cursor, limit)
    position = ctx.decode_cursor(cursor, filters)
    if position is None:
        lead = _lead(kind, ctx.workspace_id, wanted)
    elif (
        len(position) == 3
        and type(position[0]) is int
        and 0 <= position[0] < len(wanted)
        and isinstance(position[1], str)
        and type(position[2]) is int
    ):
        lead = position[0]
    else:
        ctx.decode_cursor("x.y", filters)  # raises the standard cursor error

    def has(word, alias: str, ref):
        other = SearchTerm.alias(alias)
        return fn.EXISTS(
            other.select(SQL("1")).where((other.kind == kind) & (other.ref_id == ref) & _starts_with(other.term, word))
        )

    flat = all(getattr(c, "model", None) is id_field.model for c in query.selected_columns)

    def build():
        word = _Word(f"_w{lead}")
        if narrow:
            first = SearchTerm.alias("match")
            term = first.select(fn.MIN(first.term)).where(
                (first.kind == kind) & (first.ref_id == id_field) & _starts_with(first.term, word)
            )
            ref = id_field
            q = query.select_extend(term.alias("match_term")).where(has(word, "lead", ref))
        else:
            match = SearchTerm.alias("match")
            earlier = SearchTerm.alias("earlier")
            term = match.term
            ref = match.ref_id
            q = (
                query.join_from(id_field.model, match, on=(match.ref_id == id_field), attr="match")
                .select_extend(match.term.alias("match_term"))
                .where(
                    (match.workspace == slot("_workspace"))
                    & (match.kind == kind)
                    & _starts_with(match.term, word)
                    # a row with several words in the range ("ada adams" for "ad") comes once, under the first
                    & ~fn.EXISTS(
                        earlier.select(SQL("1")).where(
                            (earlier.kind == kind)
                            & (earlier.ref_id == match.ref_id)
                            & (earlier.term >= slot(word.name))
                            & (earlier.term < match.term)
                        )
                    )
                )
            )
        for i in range(len(wanted)):
            if i != lead:
                q = q.where(has(_Word(f"_w{i}"), f"also{i}", ref))
        if position is not None:
            q = q.where(Tuple(term, ref) > Tuple(slot("_after_term"), slot("_after_id")))
        q = q.order_by(term, ref).limit(slot("_limit"))
        # rows of one model read flat (its fields and match_term on one object): peewee rebuilds
        # the join graph of every row otherwise, which cost more than the search
        return q.objects() if flat else q

    values: dict[str, Any] = {"_workspace": ctx.workspace_id, "_limit": limit + 1}
    for i, w in enumerate(wanted):
        values.update(_word_values(f"_w{i}", w))
    if position is not None:
        values.update(_after_term=position[1], _after_id=position[2])
    if prepared is None:
        compiled = Prepared(build)
    else:
        shape = (prepared[0], kind, id_field, narrow, len(wanted), lead, position is not None, flat)
        found = _PREPARED.get(shape)
        if found is None:
            found = Prepared(build)
            if len(_PREPARED) < 4096:
                _PREPARED[shape] = found
        compiled = found
        values.update(prepared[1])
    rows = compiled.all(**values)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        matched = last.match_term if narrow or flat else last.match.match_term
        next_cursor = ctx.encode_cursor(filters, [lead, matched, getattr(last, id_field.name)])
    return rows, next_cursor
