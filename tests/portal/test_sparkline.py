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
