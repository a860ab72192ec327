"""A small server-rendered SVG bar chart of calls per day (errors marked), and relative times."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

from poggio.storage.db import utcnow

BAR, GAP, HEIGHT = 4, 1, 28


SCALE = 34  # room right of the bars for the scale (the peak day's calls)


def activity_bars(series: list[tuple[dt.date, int, int]]) -> dict:
    peak = max((calls for _, calls, _ in series), default=0)
    bars = []
    for i, (day, calls, errors) in enumerate(series):
        h = 0 if not peak else max(1, round(calls / peak * HEIGHT)) if calls else 0
        eh = 0 if not calls else max(1, round(errors / calls * h)) if errors else 0
        bars.append(
            {
                "x": i * (BAR + GAP),
                "h": h,
                "y": HEIGHT - h,
                "eh": eh,
                "ey": HEIGHT - eh,
                "title": f"{day.isoformat()}: {calls} call(s), {errors} error(s)",
            }
        )
    total = sum(c for _, c, _ in series)
    errors = sum(e for _, _, e in series)
    width = len(series) * (BAR + GAP)
    return {
        "bars": bars,
        "width": width,
        "height": HEIGHT,
        "total": total,
        "errors": errors,
        "bar": BAR,
        "peak": peak,
        "svg": _svg(bars, width, total, errors, len(series), peak),
    }


def _svg(bars: list[dict], width: int, total: int, errors: int, days: int, peak: int) -> Markup:
    """The chart as inline SVG, one bar per day with its figures as a tooltip over the day's whole
    column (not only its bar, a few pixels wide), a baseline, and the scale: the busiest day's calls
    at the top right. Built here rather than in a template loop: the token list draws one per row,
    and this is much cheaper."""
    full = width + SCALE
    parts = [
        f'<svg class="spark" width="{full}" height="{HEIGHT}" viewBox="0 0 {full} {HEIGHT}" role="img" '
        f'aria-label="{total} calls, {errors} errors in {days} days; busiest day {peak} calls">',
        f'<line class="base" x1="0" y1="{HEIGHT - 0.5}" x2="{width}" y2="{HEIGHT - 0.5}"/>',
    ]
    for b in bars:
        parts.append(
            f"<g><title>{escape(b['title'])}</title>"
            f'<rect class="hit" x="{b["x"]}" y="0" width="{BAR + GAP}" height="{HEIGHT}"/>'
            f'<rect class="day" x="{b["x"]}" y="{b["y"]}" width="{BAR}" height="{b["h"]}"/>'
        )
        if b["eh"]:
            parts.append(f'<rect class="err" x="{b["x"]}" y="{b["ey"]}" width="{BAR}" height="{b["eh"]}"/>')
        parts.append("</g>")
    parts.append(
        f'<text class="scale" x="{width + 3}" y="9">{peak}/d</text>'
        f'<text class="scale" x="{width + 3}" y="{HEIGHT - 1}">0</text></svg>'
    )
    return Markup("".join(parts))


def ago(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = int(((now or utcnow()) - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            # ahead: the nearest whole unit ("in 30 days" a second after a 30-day expiry was set);
            # gone by: the whole units passed ("1 minute ago" until two have)
            n = (seconds + size // 2) // size if future else seconds // size
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"
