"""The activity record as a chart: calls per day (per hour when the span is 48 hours or less), stacked
by outcome, with the median and 95th percentile latency of each bucket and the most called tools,
for the same :class:`poggio.records.activity.Filters` as the activity page.

Each bucket is one aggregate over an index range of :class:`poggio.storage.models.Activity` (workspace or
subject, then ``at``), and two ordered look-ups for its latency percentiles: the cost grows with the
rows of the span asked for, never with the rest of the record. ``benchmarks/activity_chart.py``
measures it on a large record.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

from peewee import fn

from poggio.records.activity import OUTCOMES, Filters
from poggio.storage.db import tuple_rows, utcnow
from poggio.storage.models import Activity

HOURLY_UP_TO = dt.timedelta(hours=48)
DEFAULT_SPAN = dt.timedelta(days=30)
MAX_BUCKETS = 120
TOP_TOOLS = 5
SAMPLE = 1000  # the latest calls of a bucket its latency percentiles are taken from


def _bounds(filters: Filters, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time()) if filters.until else now
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


def _where(filters: Filters, workspace_id: int):
    """The filters, less the dates (each bucket bounds its own), as a condition each count can answer
    from one index alone: (workspace, outcome, at), or for a token or app its own (kind, subject_id,
    outcome, at). There the workspace is still tested, but through an expression (``+ 0``) so the
    planner does not pick the workspace's index and walk every other subject's rows."""
    if filters.kind is None:
        cond = Activity.workspace == workspace_id
    else:
        cond = (
            ((Activity.workspace + 0) == workspace_id)
            & (Activity.kind == filters.kind)
            & (Activity.subject_id == filters.subject_id)
        )
    if filters.tool:
        cond &= Activity.tool == filters.tool
    if filters.outcome:
        cond &= Activity.outcome == filters.outcome
    return cond


def _latencies(cond) -> tuple[float | None, float | None]:
    """Median and p95 of the latest ``SAMPLE`` calls matching ``cond`` (all of them when fewer)."""
    values = sorted(
        v
        for (v,) in tuple_rows(
            Activity.select(Activity.latency_ms).where(cond).order_by(Activity.at.desc()).limit(SAMPLE)
        )
    )
    if not values:
        return None, None
    pick = lambda share: round(values[max(0, math.ceil(share * len(values)) - 1)], 1)  # noqa: E731
    return pick(0.5), pick(0.95)


def chart(workspace_id: int, filters: Filters, now: dt.datetime | None = None, tools: list[str] | None = None) -> dict:
    """The chart's figures. Calls are counted exactly, per bucket and outcome, each count over one
    index; the latency percentiles of a bucket come from its latest ``SAMPLE`` calls; the top tools
    are counted among ``tools`` (the installed tools and method names) over the whole span."""
    now = now or utcnow()
    start, end = _bounds(filters, now)
    unit, spans = buckets(start, end)
    base = _where(filters, workspace_id)
    outcomes = [filters.outcome] if filters.outcome else list(OUTCOMES)
    stacks = {o: [0] * len(spans) for o in OUTCOMES}
    medians, p95s = [], []
    for i, (a, b) in enumerate(spans):
        cond = base & (Activity.at >= a) & (Activity.at < b)
        for o in outcomes:
            stacks[o][i] = Activity.select().where(cond & (Activity.outcome == o)).count()
        median, p95 = _latencies(cond) if any(stacks[o][i] for o in outcomes) else (None, None)
        medians.append(median)
        p95s.append(p95)
    span = base & (Activity.at >= start) & (Activity.at < end)
    counted: Counter[str] = Counter()
    if filters.outcome and not filters.tool:  # one pass over the outcome's index range beats a count per tool
        counted.update(
            dict(tuple_rows(Activity.select(Activity.tool, fn.COUNT(Activity.id)).where(span).group_by(Activity.tool)))
        )
    else:
        for tool in [filters.tool] if filters.tool else (tools or []):
            n = Activity.select().where(span & (Activity.tool == tool)).count()
            if n:
                counted[tool] = n
    starts = [a for a, _ in spans]
    return {
        "unit": unit,
        "from": start.isoformat(timespec="seconds") + "Z",
        "to": end.isoformat(timespec="seconds") + "Z",
        "buckets": [a.isoformat(timespec="minutes") + "Z" for a in starts],
        "t": [int(a.replace(tzinfo=dt.UTC).timestamp()) for a in starts],
        "outcomes": stacks,
        "median_ms": medians,
        "p95_ms": p95s,
        "top_tools": counted.most_common(TOP_TOOLS),
        "total": sum(sum(v) for v in stacks.values()),
    }
