"""Activity for the portal: calls per day and per tool of API tokens (TokenUsage) or connected apps
(GrantUsage), in one query for a whole list."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from peewee import fn

from poggio.storage.db import utcnow
from poggio.storage.models import GrantUsage, TokenUsage

DAYS = 30
MAX_TOOLS = 50  # rows of a token's per-tool breakdown; the rest are added up in one last row


def _owner(usage):
    return usage.grant if usage is GrantUsage else usage.token


def daily(
    token_ids: list[int], days: int = DAYS, today: dt.date | None = None, usage=TokenUsage
) -> dict[int, list[tuple[dt.date, int, int]]]:
    """For each token (or grant, with ``usage=GrantUsage``): ``days`` entries of (day, calls, errors),
    oldest first, zero-filled."""
    today = today or utcnow().date()
    start = today - dt.timedelta(days=days - 1)
    found: dict[int, dict[dt.date, tuple[int, int]]] = defaultdict(dict)
    if token_ids:
        owner = _owner(usage)
        rows = (
            usage.select(owner, usage.day, fn.SUM(usage.calls), fn.SUM(usage.errors))
            .where(owner.in_(token_ids) & (usage.day >= start))
            .group_by(owner, usage.day)
            .tuples()
        )
        for token_id, day, calls, errors in rows:
            if isinstance(day, str):
                day = dt.date.fromisoformat(day)
            found[token_id][day] = (int(calls), int(errors))
    series = {}
    for token_id in token_ids:
        per_day = found.get(token_id, {})
        series[token_id] = [
            (start + dt.timedelta(days=i), *per_day.get(start + dt.timedelta(days=i), (0, 0))) for i in range(days)
        ]
    return series


def by_tool(token_id: int, days: int = DAYS, limit: int = MAX_TOOLS, usage=TokenUsage) -> list[tuple[str, int, int]]:
    """(tool, calls, errors) of a token (or grant, with ``usage=GrantUsage``) over the last ``days``
    days, busiest first: ``limit`` rows at most, and then one row that adds up all the others (rows
    stored before unknown names were counted as one would otherwise make the list as long as a
    caller liked)."""
    start = utcnow().date() - dt.timedelta(days=days - 1)
    rows = (
        usage.select(usage.tool, fn.SUM(usage.calls), fn.SUM(usage.errors))
        .where((_owner(usage) == token_id) & (usage.day >= start))
        .group_by(usage.tool)
        .tuples()
    )
    ranked = sorted(((t, int(c), int(e)) for t, c, e in rows), key=lambda r: (-r[1], r[0]))
    if len(ranked) <= limit:
        return ranked
    rest = ranked[limit:]
    return ranked[:limit] + [(f"{len(rest)} other names", sum(r[1] for r in rest), sum(r[2] for r in rest))]
