"""Keyset pagination for tools: ``limit`` + an opaque, signed ``cursor``.

Pages are cut on an ordered, unique key (e.g. ``(name, id)``), so a page costs the same at row
1,000,000 as at row 1, and rows added between calls never shift a page.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from peewee import Tuple

from poggio.packs import ToolContext


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def keyset_page(ctx: ToolContext, query, keys: list, filters: dict[str, Any], cursor: str | None, limit: int):
    """Rows of ``query`` ordered by ``keys`` after the cursor's position; returns ``(rows, next_cursor)``."""
    position = ctx.decode_cursor(cursor, filters)
    if position is not None:
        if len(position) != len(keys):
            position = ctx.decode_cursor("x.y", filters)  # raises the standard cursor error
        query = query.where(Tuple(*keys) > Tuple(*position))
    rows = list(query.order_by(*keys).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = ctx.encode_cursor(filters, [_plain(getattr(last, k.name)) for k in keys])
    return rows, next_cursor
