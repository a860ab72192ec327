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
from collections.abc import Iterable
from typing import Any

from peewee import SQL, CharField, IntegerField, Tuple, fn

from poggio.models import WorkspaceModel
from poggio.packs import ToolContext
from poggio.paging import keyset_page

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
            (("kind", "ref_id"), False),
        )


def words(text: str | None) -> list[str]:
    """The normalised words of ``text``, in order, each cut to ``MAX_TERM`` characters."""
    if not text:
        return []
    folded = unicodedata.normalize("NFKD", text).casefold()
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w[:MAX_TERM] for w in _WORD.findall(folded)]


def _term_rows(kind: str, workspace_id: int, ref_id: int, texts: Iterable[str | None]) -> list[dict]:
    terms: set[str] = set()
    for text in texts:
        terms.update(words(text))
    return [{"workspace": workspace_id, "kind": kind, "term": t, "ref_id": ref_id} for t in sorted(terms)]


def add_search_terms(kind: str, workspace_id: int, entries: Iterable[tuple[int, Iterable[str | None]]],
                     batch: int = 2000) -> None:
    """Make new rows findable by :func:`search_page`: ``entries`` are ``(row id, texts)`` of the
    workspace's rows of ``kind`` (a name of the pack's choosing, such as ``"account"``). Call it in the
    transaction that inserts the rows; the terms go when their workspace does."""
    buf: list[dict] = []
    for ref_id, texts in entries:
        buf.extend(_term_rows(kind, workspace_id, ref_id, texts))
        if len(buf) >= batch:
            SearchTerm.insert_many(buf).execute()
            buf.clear()
    if buf:
        SearchTerm.insert_many(buf).execute()


def replace_search_terms(kind: str, workspace_id: int, ref_id: int, texts: Iterable[str | None]) -> None:
    """A changed row's words in place of its old ones (a renamed account is found by its new name,
    no longer by the old); in the transaction that changes the row."""
    SearchTerm.delete().where((SearchTerm.workspace == workspace_id) & (SearchTerm.kind == kind)
                              & (SearchTerm.ref_id == ref_id)).execute()
    rows = _term_rows(kind, workspace_id, ref_id, texts)
    if rows:
        SearchTerm.insert_many(rows).execute()


def query_words(text: str | None) -> list[str]:
    """The distinct words a search for ``text`` looks for (at most ``MAX_QUERY_WORDS``)."""
    return list(dict.fromkeys(words(text)))[:MAX_QUERY_WORDS]


def _starts_with(term, word: str):
    return (term >= word) & (term < word + _TOP)


COUNT_CAP = 2000


def _lead(kind: str, workspace_id: int, query: list[str]) -> int:
    """Which word's matches to walk: the one with the fewest (counted up to ``COUNT_CAP``), the longest on a tie."""
    if len(query) == 1:
        return 0
    counts = [
        SearchTerm.select(SearchTerm.ref_id)
        .where((SearchTerm.workspace == workspace_id) & (SearchTerm.kind == kind) & _starts_with(SearchTerm.term, w))
        .limit(COUNT_CAP)
        .count()
        for w in query
    ]
    return min(range(len(query)), key=lambda i: (counts[i], -len(query[i]), i))


def search_page(ctx: ToolContext, query, id_field, kind: str, text: str | None, filters: dict[str, Any],
                cursor: str | None, limit: int, order: list, narrow: bool = False):
    """One page of ``query`` (a select of ``id_field``'s model, already scoped to ``ctx.workspace_id``)
    for the search words in ``text``: ``(rows, next_cursor)``. ``filters`` are the call's other
    arguments (a cursor is refused by a call with other filters or other words).

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
    wanted = query_words(text)
    filters = {**filters, "search words": wanted}
    if not wanted:
        return keyset_page(ctx, query, order, filters, cursor, limit)
    position = ctx.decode_cursor(cursor, filters)
    if position is None:
        lead = _lead(kind, ctx.workspace_id, wanted)
    elif (len(position) == 3 and type(position[0]) is int and 0 <= position[0] < len(wanted)
          and isinstance(position[1], str) and type(position[2]) is int):
        lead = position[0]
    else:
        ctx.decode_cursor("x.y", filters)  # raises the standard cursor error

    def has(word: str, alias: str, ref):
        other = SearchTerm.alias(alias)
        return fn.EXISTS(other.select(SQL("1")).where(
            (other.kind == kind) & (other.ref_id == ref) & _starts_with(other.term, word)))

    word = wanted[lead]
    if narrow:
        first = SearchTerm.alias("match")
        term = first.select(fn.MIN(first.term)).where(
            (first.kind == kind) & (first.ref_id == id_field) & _starts_with(first.term, word))
        ref = id_field
        q = query.select_extend(term.alias("match_term")).where(has(word, "lead", ref))
    else:
        match = SearchTerm.alias("match")
        earlier = SearchTerm.alias("earlier")
        term = match.term
        ref = match.ref_id
        q = (query.join_from(id_field.model, match, on=(match.ref_id == id_field), attr="match")
             .select_extend(match.term.alias("match_term"))
             .where((match.workspace == ctx.workspace_id) & (match.kind == kind) & _starts_with(match.term, word)
                    # a row with several words in the range ("ada adams" for "ad") comes once, under the first
                    & ~fn.EXISTS(earlier.select(SQL("1")).where(
                        (earlier.kind == kind) & (earlier.ref_id == match.ref_id)
                        & (earlier.term >= word) & (earlier.term < match.term)))))
    for i, other in enumerate(wanted):
        if i != lead:
            q = q.where(has(other, f"also{i}", ref))
    if position is not None:
        q = q.where(Tuple(term, ref) > Tuple(position[1], position[2]))
    rows = list(q.order_by(term, ref).limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        matched = last.match_term if narrow else last.match.match_term
        next_cursor = ctx.encode_cursor(filters, [lead, matched, getattr(last, id_field.name)])
    return rows, next_cursor
