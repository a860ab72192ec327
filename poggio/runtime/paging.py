"""Paged list tools: the ``limit`` and ``cursor`` arguments, the page model, its text, and keyset
pagination over a peewee query.

Pages are cut on an ordered, unique key (e.g. ``(name, id)``), so a page costs the same at row
1,000,000 as at row 1, and rows added between calls never shift a page.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from peewee import Tuple
from pydantic import BaseModel, ConfigDict, Field

from poggio.runtime.packs import ToolContext

T = TypeVar("T")

Limit = Annotated[int, Field(ge=1, le=100, description="How many results to return (1-100).")]
Cursor = Annotated[
    str | None,
    Field(
        max_length=2000, description="The next_cursor of a previous call with the same filters, to get the next page."
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a list tool's results. The output model of a tool that lists accounts, with
    ``{"accounts": [...], "next_cursor": ...}`` on the wire and ``page.items`` in Python::

        class AccountPage(Page[AccountOut]):
            model_config = Page.items_as("accounts")

    (``Page.of(AccountOut, "accounts")`` makes the same class, untyped for an editor.)"""

    model_config = ConfigDict(populate_by_name=True)

    items: list[T]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")

    @staticmethod
    def items_as(key: str) -> ConfigDict:
        """The ``model_config`` of a page whose list is named ``key`` in the tool's output."""
        return ConfigDict(populate_by_name=True, alias_generator=lambda name: key if name == "items" else name)

    @classmethod
    def of(cls, item: type[T], key: str) -> type[Page[T]]:
        """The page model of ``item``, whose list is named ``key`` in the tool's output."""
        return type(
            f"{item.__name__}Page",
            (cls[item],),  # type: ignore[index]  # a generic model's class, made at run time
            {
                "__module__": item.__module__,
                "model_config": ConfigDict(
                    populate_by_name=True, alias_generator=lambda name: key if name == "items" else name
                ),
            },
        )


def page_text(page: Page[T], line: Callable[[T], str], noun: str, plural: str | None = None, first: bool = True) -> str:
    """The readable text of a page: ``2 accounts:`` and a line per item, and a hint when there is more;
    ``No accounts match.`` (on the first page, ``first``) or ``No more accounts.`` when it is empty."""
    many = plural or f"{noun}s"
    if not page.items:
        return f"No {many} match." if first else f"No more {many}."
    count = len(page.items)
    text = f"{count} {noun if count == 1 else many}:\n" + "\n".join(line(item) for item in page.items)
    if page.next_cursor:
        text += "\nMore results: call again with the next_cursor."
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def keyset_page(
    ctx: ToolContext, query: Any, keys: Sequence[Any], filters: dict[str, Any], cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """Rows of ``query`` ordered by ``keys`` (fields whose values together are unique, the last
    usually the id) after the cursor's position; returns ``(rows, next_cursor)``. ``filters`` are the
    call's other arguments: a cursor is refused by a call with other filters."""
    position = ctx.decode_cursor(cursor, filters)
    if position is not None:
        if len(position) != len(keys):
            ctx.decode_cursor("x.y", filters)  # raises the standard cursor error
        query = query.where(Tuple(*keys) > Tuple(*position))
    rows = list(query.order_by(*keys).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = ctx.encode_cursor(filters, [_plain(getattr(last, k.name)) for k in keys])
    return rows, next_cursor
