"""The console's front page: how the last 24 hours or 7 days of calls went, from the database.

Closed hours come from the worker's rollup (``console.hours``), the hours after
it from ``calls`` through ``calls_created_at_idx`` (009); rejections from
``webhook_deliveries_outcome_received_at_idx`` (006). Hours are UTC, as everywhere
in the console.
"""

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
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

# By outcome, through webhook_deliveries_outcome_received_at_idx: only the refused
# deliveries are read, not every delivery of the week.
REJECTIONS_BY_HOUR = """
SELECT date_trunc('hour', received_at, 'UTC'), count(*)
  FROM webhook_deliveries
 WHERE outcome = ANY(%(rejected)s) AND received_at >= %(since)s
 GROUP BY 1
"""


@dataclass
class Overview:
    """What the front page shows for one window; counts per hour are aligned with ``hours``."""

    window: str
    hours: list[datetime]
    calls: dict[str, list[int]]  # per kind of LABELS
    rejections: list[int]
    completed: int
    median_duration_secs: float | None
    answered_share: float | None  # of completed calls, those with an answer collected
    failure_reasons: list[tuple[str | None, int]]  # the 8 commonest


def kind_of(status: str, failure_reason: str | None) -> str:
    """Return the bar a call is stacked in: "no-answer" and "busy" are ElevenLabs' own reasons."""
    if status == "completed":
        return "completed"
    if status == "failed":
        return failure_reason if failure_reason in ("no-answer", "busy") else "failed"
    return "in-progress"


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
    params = {"since": since, "from": live_from, "until": end + timedelta(hours=1)}
    calls = {kind: [0] * len(span) for kind in LABELS}
    completed = answered = 0
    reasons = Counter()
    for hour, status, reason, count, with_answer in conn.execute(CALLS_SEEN, params):
        calls[kind_of(status, reason)][slot[hour]] += count
        if status == "completed":
            completed, answered = completed + count, answered + with_answer
        elif status == "failed":
            reasons[reason] += count
    rejections = [0] * len(span)
    # A delivery stamped past this hour (a clock ahead of ours) has no bar: it is left out.
    for hour, count in conn.execute(REJECTIONS_BY_HOUR, {"since": since, "rejected": REJECTED}):
        if hour in slot:
            rejections[slot[hour]] = count
    median_secs = median(dict(conn.execute(DURATIONS_SEEN, params).fetchall()))
    share = answered / completed if completed else None
    by_count = sorted(reasons.items(), key=lambda r: (-r[1], r[0] is None, r[0] or ""))
    return Overview(window, span, calls, rejections, completed, median_secs, share, by_count[:8])
