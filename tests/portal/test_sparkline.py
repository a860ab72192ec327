"""The 30-day sparkline of the token and connected app lists is readable: its scale (the busiest
day's calls) is written on it, and each day's figures show on hover anywhere in its column."""

from __future__ import annotations

import datetime as dt
import re

from portal.charts import HEIGHT, activity_bars


def test_the_sparkline_carries_its_scale_and_a_hover_value_per_day():
    start = dt.date(2026, 3, 1)
    series = [
        (start + dt.timedelta(days=i), calls, errors)
        for i, (calls, errors) in enumerate([(0, 0)] * 28 + [(12, 0), (40, 3)])
    ]
    svg = str(activity_bars(series)["svg"])
    assert '<text class="scale"' in svg and ">40/d</text>" in svg and ">0</text>" in svg
    hits = re.findall(r'<g><title>([^<]+)</title><rect class="hit" x="\d+" y="0" width="\d+" height="(\d+)"', svg)
    assert len(hits) == 30 and all(int(h) == HEIGHT for _, h in hits)
    assert hits[-1][0] == "2026-03-30: 40 call(s), 3 error(s)"
    assert 'aria-label="52 calls, 3 errors in 30 days; busiest day 40 calls"' in svg


def test_a_moment_ahead_reads_as_its_nearest_whole_unit():
    """A token made with a 30-day expiry reads "in 30 days" on every page that second and the next:
    flooring made it "in 29 days" as soon as a second had passed, so two renders of one row differed.
    Past moments keep counting whole units gone by."""
    import datetime as dt

    from portal.charts import ago

    now = dt.datetime(2026, 12, 6, 12, 0, 0)
    for lag in (0, 1, 59, 3599):
        assert ago(now + dt.timedelta(days=30, seconds=-lag), now) == "in 30 days"
    assert ago(now + dt.timedelta(minutes=59, seconds=50), now) == "in 60 minutes"
    assert ago(now - dt.timedelta(days=30, seconds=-1), now) == "29 days ago"
    assert ago(now - dt.timedelta(seconds=30), now) == "just now"
