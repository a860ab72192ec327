"""Word-prefix search that works the same on SQLite and PostgreSQL, through one B-tree index.

Searchable text (an account's name and domain, a contact's name and e-mail, ...) is split into
normalised words stored in ``search_term`` next to the row they point at. A query matches the rows
that have, for every query word, a stored word starting with it: "acm ind" finds "Acme Industries".
Normalisation keeps letters and digits only (accents folded, case folded), so the range scan
``term >= w AND term < w + U+10FFFF`` is a prefix match under any collation and no user input ever
reaches a LIKE pattern or an FTS query parser.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from peewee import CharField, ForeignKeyField, IntegerField

from poggio.db import BaseModel
from poggio.models import Workspace

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERM = 40
MAX_QUERY_WORDS = 6
_TOP = "\U0010ffff"


class SearchTerm(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
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


def term_rows(kind: str, workspace_id: int, ref_id: int, *texts: str | None) -> list[dict]:
    """Rows of ``search_term`` for one object; an e-mail or domain also yields its whole first part."""
    terms: set[str] = set()
    for text in texts:
        terms.update(words(text))
    return [{"workspace": workspace_id, "kind": kind, "term": t, "ref_id": ref_id} for t in sorted(terms)]


def index(kind: str, workspace_id: int, ref_id: int, *texts: str | None) -> None:
    """(Re)index one object."""
    SearchTerm.delete().where((SearchTerm.kind == kind) & (SearchTerm.ref_id == ref_id)).execute()
    rows = term_rows(kind, workspace_id, ref_id, *texts)
    if rows:
        SearchTerm.insert_many(rows).execute()


def bulk_insert(rows: Iterable[dict], batch: int = 2000) -> None:
    buf: list[dict] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= batch:
            SearchTerm.insert_many(buf).execute()
            buf.clear()
    if buf:
        SearchTerm.insert_many(buf).execute()


def matching_ids(kind: str, workspace_id: int, query: str):
    """A sub-query of the ids of ``kind`` in the workspace matching every word of ``query``.

    Returns ``None`` when the query has no searchable word (the caller then lists without a filter).
    """
    query_words = list(dict.fromkeys(words(query)))[:MAX_QUERY_WORDS]
    if not query_words:
        return None
    subqueries = [
        SearchTerm.select(SearchTerm.ref_id).where(
            (SearchTerm.workspace == workspace_id)
            & (SearchTerm.kind == kind)
            & (SearchTerm.term >= w)
            & (SearchTerm.term < w + _TOP)
        )
        for w in query_words
    ]
    result = subqueries[0]
    for sub in subqueries[1:]:
        result = result & sub  # INTERSECT
    return result


SPARSE = 500


def restrict(query, id_field, kind: str, workspace_id: int, text: str):
    """``query`` limited to the rows of ``kind`` matching ``text`` (unchanged when ``text`` has no word).

    When few rows match (at most ``SPARSE``), their ids go into the query as a list, so the database
    fetches just those rows by primary key and sorts them; when many match, a sub-query lets it walk
    its ordering index and stop at the first page. Either way the cost follows the page and the
    matches, not the size of the workspace."""
    ids = matching_ids(kind, workspace_id, text)
    if ids is None:
        return query
    few = [ref for (ref,) in ids.limit(SPARSE + 1).tuples()]
    if len(few) <= SPARSE:
        return query.where(id_field.in_(few)) if few else query.where(id_field == -1)
    return query.where(id_field.in_(ids))
