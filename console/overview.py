"""The console's front page: how the last 24 hours or 7 days of calls went, from the database.

Every figure is read through ``calls_created_at_idx`` (010) or
``webhook_deliveries_outcome_received_at_idx`` (006), for the window only. Hours are UTC,
as everywhere in the console.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models import webhook_deliveries as deliveries

# Every outcome not answered with a 2xx.
REJECTED = [o for o, status in deliveries.STATUS.items() if status >= 300]
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# The bars' stack, bottom up; the names are CSS classes too.
KINDS = ("completed", "no-answer", "busy", "failed", "in-progress")
LABELS = {
    "completed": "completed",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "failed (other reasons)",
    "in-progress": "not ended yet",
}

# "no-answer" and "busy" are ElevenLabs' call_initiation_failure reasons, stored as sent.
CALLS_BY_HOUR = """
SELECT date_trunc('hour', created_at, 'UTC') AS hour,
       CASE WHEN status = 'completed' THEN 'completed'
            WHEN status = 'failed' AND failure_reason IN ('no-answer', 'busy') THEN failure_reason
            WHEN status = 'failed' THEN 'failed'
            ELSE 'in-progress' END AS kind,
       count(*)
  FROM calls
 WHERE created_at >= %(since)s
 GROUP BY 1, 2
"""

# An answer is collected when the agent extracted a value for at least one item.
# The window's calls are read once; the answered ones among them come from
# call_outcomes_answered_idx, from the window's smallest id on, hashed: a look-up
# per call would probe the index 50,000 times for a week of a million calls a
# quarter, and min(id) on calls itself would walk the primary key from the oldest call.
COMPLETED_CALLS = """
WITH completed AS MATERIALIZED (
    SELECT id, call_duration_secs FROM calls
     WHERE created_at >= %(since)s AND status = 'completed'
)
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY call_duration_secs),
       count(*) FILTER (WHERE id IN (
           SELECT o.call_id FROM call_outcomes o
            WHERE jsonb_path_exists(o.data_collection, '$.* ? (@ != null)')
              AND o.call_id >= (SELECT min(id) FROM completed)))
  FROM completed
"""

FAILURE_REASONS = """
SELECT failure_reason, count(*)
  FROM calls
 WHERE created_at >= %(since)s AND status = 'failed'
 GROUP BY failure_reason
 ORDER BY count(*) DESC, failure_reason
 LIMIT 8
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
    """What the front page shows for one window."""

    window: str
    hours: list[datetime]
    calls: dict[str, list[int]]  # kind -> calls per hour, aligned with hours
    rejections: list[int]
    completed: int
    median_duration_secs: float | None
    answered_share: float | None  # of completed calls, those with an answer collected
    failure_reasons: list[tuple[str | None, int]]

    @property
    def total(self) -> int:
        """Return how many calls were created in the window."""
        return sum(sum(counts) for counts in self.calls.values())


def read(conn, window: str, *, now: datetime | None = None) -> Overview:
    """Return the overview of the window ending now."""
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=n) for n in range(int(WINDOWS[window] / timedelta(hours=1)))]
    hours.reverse()
    params = {"since": hours[0], "rejected": REJECTED}
    slot = {hour: n for n, hour in enumerate(hours)}
    calls = {kind: [0] * len(hours) for kind in KINDS}
    # A row stamped past this hour (a clock ahead of ours) has no bar: it is left out.
    for hour, kind, count in conn.execute(CALLS_BY_HOUR, params):
        if hour in slot:
            calls[kind][slot[hour]] = count
    rejections = [0] * len(hours)
    for hour, count in conn.execute(REJECTIONS_BY_HOUR, params):
        if hour in slot:
            rejections[slot[hour]] = count
    completed, median, answered = conn.execute(COMPLETED_CALLS, params).fetchone()
    return Overview(
        window=window,
        hours=hours,
        calls=calls,
        rejections=rejections,
        completed=completed,
        median_duration_secs=median,
        answered_share=answered / completed if completed else None,
        failure_reasons=conn.execute(FAILURE_REASONS, params).fetchall(),
    )
