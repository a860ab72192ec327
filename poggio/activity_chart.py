"""The activity record as a chart: calls per day (per hour when the span is 48 hours or less), stacked
by outcome, with the median and 95th percentile latency of each bucket and the most called tools,
for the same :class:`poggio.activity.Filters` as the activity page.

Each bucket is one aggregate over an index range of :class:`poggio.models.Activity` (workspace or
subject, then ``at``), and two ordered look-ups for its latency percentiles: the cost grows with the
rows of the span asked for, never with the rest of the record. ``benchmarks/activity_chart.py``
measures it on a large record.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

from peewee import fn

from poggio.activity import OUTCOMES, Filters
from poggio.db import utcnow
from poggio.models import Activity

HOURLY_UP_TO = dt.timedelta(hours=48)
DEFAULT_SPAN = dt.timedelta(days=30)
MAX_BUCKETS = 120
TOP_TOOLS = 5


def _bounds(filters: Filters, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = (dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time()) if filters.until else now)
    end = min(end, now)
    if filters.since is None:
        start = end - DEFAULT_SPAN
    elif isinstance(filters.since, dt.datetime):
        start = filters.since
    else:
        start = dt.datetime.combine(filters.since, dt.time())
    return start, max(end, start)


def buckets(start: dt.datetime, end: dt.datetime) -> tuple[str, list[tuple[dt.datetime, dt.datetime]]]:
    """("hour" or "day", the [from, to) of each bucket), whole hours or UTC days, at most MAX_BUCKETS."""
    if end - start <= HOURLY_UP_TO:
        unit, step = "hour", dt.timedelta(hours=1)
        first = start.replace(minute=0, second=0, microsecond=0)
    else:
        unit, step = "day", dt.timedelta(days=1)
        first = dt.datetime.combine(start.date(), dt.time())
    count = max(1, math.ceil((end - first) / step))
    skipped = max(0, count - MAX_BUCKETS)  # a longer span shows its latest MAX_BUCKETS
    spans = [(first + i * step, first + (i + 1) * step) for i in range(skipped, count)]
    return unit, [(max(a, start), min(b, end)) for a, b in spans]


def _percentile(cond, count: int, share: float) -> float | None:
    if not count:
        return None
    rank = max(0, math.ceil(share * count) - 1)
    row = (Activity.select(Activity.latency_ms).where(cond).order_by(Activity.latency_ms)
           .limit(1).offset(rank).tuples().first())
    return round(row[0], 1) if row else None


def chart(workspace_id: int, filters: Filters, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    start, end = _bounds(filters, now)
    unit, spans = buckets(start, end)
    base = filters.where(workspace_id)
    stacks = {o: [] for o in OUTCOMES}
    medians, p95s, tools = [], [], Counter()
    for a, b in spans:
        cond = base & (Activity.at >= a) & (Activity.at < b)
        counts = Counter()
        for outcome, tool, n in (Activity.select(Activity.outcome, Activity.tool, fn.COUNT(Activity.id)).where(cond)
                                 .group_by(Activity.outcome, Activity.tool).tuples()):
            counts[outcome] += n
            tools[tool] += n
        for o in OUTCOMES:
            stacks[o].append(counts.get(o, 0))
        total = sum(counts.values())
        medians.append(_percentile(cond, total, 0.5))
        p95s.append(_percentile(cond, total, 0.95))
    starts = [a for a, _ in spans]
    return {
        "unit": unit,
        "from": start.isoformat(timespec="seconds") + "Z", "to": end.isoformat(timespec="seconds") + "Z",
        "buckets": [a.isoformat(timespec="minutes") + "Z" for a in starts],
        "t": [int(a.replace(tzinfo=dt.UTC).timestamp()) for a in starts],
        "outcomes": stacks,
        "median_ms": medians,
        "p95_ms": p95s,
        "top_tools": tools.most_common(TOP_TOOLS),
        "total": sum(sum(v) for v in stacks.values()),
    }
