"""The console's front page: how the last 24 hours or 7 days of calls went, from the database.

Closed UTC hours come from the worker's rollup (``console.hours``), the hours after it
from ``calls`` through ``calls_created_at_idx`` (009). Charts are SVG drawn by the server
(``_chart.html``); colours come from the stylesheet by the series' names, not inline styles.
"""

import math
from bisect import bisect_right
from collections import Counter, namedtuple
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from console import hours
from console.queries import REJECTED

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# The bars' stack, bottom up; the names are CSS classes too.
LABELS = {
    "completed": "completed",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "failed (other reasons)",
    "in-progress": "not ended yet",
}

# The window's hours: the rolled ones up to %(from)s, then the rest live.
CALLS_SEEN = f"""
SELECT hour, status, failure_reason, calls, answered
  FROM call_hours
 WHERE hour >= %(since)s AND hour < %(from)s
UNION ALL
{hours.CALL_HOURS}
"""

# The window's completed calls by duration, rolled and live alike.
DURATIONS_SEEN = f"""
SELECT duration_secs, sum(calls)::bigint
  FROM (SELECT duration_secs, calls
          FROM call_hour_durations
         WHERE hour >= %(since)s AND hour < %(from)s
        UNION ALL
        SELECT duration_secs, calls FROM ({hours.CALL_DURATIONS}) AS live) AS seen
 GROUP BY duration_secs
"""

# By outcome, through webhook_deliveries_outcome_received_at_idx (006): only the refused
# deliveries are read, not every delivery of the week.
REJECTIONS_BY_HOUR = """
SELECT date_trunc('hour', received_at, 'UTC'), count(*)
  FROM webhook_deliveries
 WHERE outcome = ANY(%(rejected)s) AND received_at >= %(since)s
 GROUP BY 1
"""


# A window's figures; calls (per kind of LABELS) and rejections are counts per hour of hours.
Overview = namedtuple(
    "Overview",
    "window hours calls rejections completed median_duration_secs answered_share failure_reasons",
)


def kind_of(status: str, failure_reason: str | None) -> str:
    """Return the bar a call is stacked in: "no-answer" and "busy" are ElevenLabs' own reasons."""
    if status == "failed" and failure_reason in ("no-answer", "busy"):
        return failure_reason
    return status if status in ("completed", "failed") else "in-progress"


def median(durations: dict[int, int]) -> float | None:
    """Return the median of a histogram {value: count}, as percentile_cont(0.5) would."""
    values = sorted(durations)
    upto = list(accumulate(durations[value] for value in values))
    if not upto:
        return None
    # The middle value, or the mean of the two middle ones of an even count.
    lower, upper = (values[bisect_right(upto, n)] for n in ((upto[-1] - 1) // 2, upto[-1] // 2))
    return (lower + upper) / 2


def read(conn, window: str, *, now: datetime | None = None) -> Overview:
    """Return the overview of the window ending now."""
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    since = end - WINDOWS[window] + timedelta(hours=1)
    span = [since + timedelta(hours=n) for n in range(WINDOWS[window] // timedelta(hours=1))]
    slot = {hour: n for n, hour in enumerate(span)}
    live_from = min(max(since, hours.rolled_until(conn) or since), end)
    until = end + timedelta(hours=1)
    params = {"since": since, "from": live_from, "until": until, "rejected": REJECTED}
    calls = {kind: [0] * len(span) for kind in LABELS}
    completed = answered = 0
    reasons = Counter()
    for hour, status, reason, count, with_answer in conn.execute(CALLS_SEEN, params):
        calls[kind_of(status, reason)][slot[hour]] += count
        if status == "completed":
            completed, answered = completed + count, answered + with_answer
        elif status == "failed":
            reasons[reason] += count
    # A delivery stamped past this hour (a clock ahead of ours) has no bar: it is left out.
    rejected = dict(conn.execute(REJECTIONS_BY_HOUR, params).fetchall())
    rejections = [rejected.get(hour, 0) for hour in span]
    median_secs = median(dict(conn.execute(DURATIONS_SEEN, params).fetchall()))
    share = answered / completed if completed else None
    by_count = sorted(reasons.items(), key=lambda r: (-r[1], r[0] is None, r[0] or ""))
    return Overview(window, span, calls, rejections, completed, median_secs, share, by_count[:8])


LEFT, BOTTOM, TOP = 44, 22, 8  # room for the count axis, the hour labels, the top label
HEIGHT = 200

Bar = namedtuple("Bar", "x y width height series title")  # one segment of one hour's stack
# Bars, then the count axis's lines as (y, value) and the hour labels as (x, text).
Chart = namedtuple("Chart", "width height bars counts hours")


def nice_ceiling(value: int) -> int:
    """Return the smallest of 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    step = 1
    while step * 5 < value:
        step *= 10
    return next(step * factor for factor in (1, 2, 5) if step * factor >= value)


def stacked_bars(
    hours: list[datetime], series: dict[str, list[int]], labels: dict[str, str], *, width=1320
) -> Chart:
    """Return a chart with one stacked bar per hour, series stacked in the order given."""
    plot_width, floor = width - LEFT, HEIGHT - BOTTOM
    plot_height = floor - TOP
    top = nice_ceiling(max(map(sum, zip(*series.values(), strict=True)), default=0))
    slot = plot_width / max(len(hours), 1)
    bars = []
    for n, hour in enumerate(hours):
        base = float(floor)
        for name, counts in series.items():
            if counts[n]:
                tall = counts[n] / top * plot_height
                base -= tall
                title = f"{hour:%a %H:00} UTC: {counts[n]:,} {labels[name]}"
                bars.append(Bar(LEFT + n * slot + 0.5, base, max(slot - 1, 1), tall, name, title))
    marks = (0, top // 2, top) if top % 2 == 0 else (0, top)
    every = math.ceil(len(hours) / (plot_width / 110))  # a label per 110 units at most
    hour_format = "%Hh" if len(hours) <= 24 else "%a %Hh"
    axis = [(floor - plot_height * mark / top, mark) for mark in marks]
    hour_labels = [
        (LEFT + n * slot + slot / 2, f"{hour:{hour_format}}") for n, hour in enumerate(hours)
    ]
    return Chart(width, HEIGHT, bars, axis, hour_labels[::every])
