"""The overview's hourly counts of calls (012), recounted by the dispatch worker.

Counting a week of calls (~78k rows at a million a quarter) on every request would
cost the front page a few hundred milliseconds. Recounted whole every minute, never
patched: a call that ends after its hour was counted (a late webhook, a reconcile)
shows its outcome at the next recount. A rollup older than 5 minutes is not
read: no worker, no stale figure, only a slower page.
"""

from datetime import UTC, datetime, timedelta

# The calls created in [from, until), counted by hour, status and failure reason.
# Answered: the agent extracted a value for at least one item (call_outcomes_answered_idx).
CALL_HOURS = """
SELECT date_trunc('hour', c.created_at, 'UTC') AS hour, c.status, c.failure_reason,
       count(*) AS calls, count(a.call_id) AS answered
  FROM calls c
  LEFT JOIN (SELECT call_id FROM call_outcomes
              WHERE jsonb_path_exists(data_collection, '$.* ? (@ != null)')) a
         ON a.call_id = c.id
 WHERE c.created_at >= %(from)s AND c.created_at < %(until)s
 GROUP BY 1, 2, 3
"""

# The completed calls created in [from, until), counted by hour and duration: the median's.
CALL_DURATIONS = """
SELECT date_trunc('hour', created_at, 'UTC') AS hour, call_duration_secs AS duration_secs,
       count(*) AS calls
  FROM calls
 WHERE created_at >= %(from)s AND created_at < %(until)s
   AND status = 'completed' AND call_duration_secs IS NOT NULL
 GROUP BY 1, 2
"""

# One recount at a time (the lock conflicts with itself); the overview reads on meanwhile.
CLEAR = """
LOCK TABLE call_hours, call_hour_durations IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM call_hours;
DELETE FROM call_hour_durations
"""
ROLL_UP = (
    f"INSERT INTO call_hours (hour, status, failure_reason, calls, answered) {CALL_HOURS}",
    f"INSERT INTO call_hour_durations (hour, duration_secs, calls) {CALL_DURATIONS}",
)

# The hours the longest window shows, the current one excepted (it is read live).
KEPT = timedelta(days=7) - timedelta(hours=1)

# A rollup recounted longer ago than 5 minutes is not read: its worker has stopped.
ROLLED_UNTIL = """
SELECT max(hour) + interval '1 hour' FROM call_hours
 WHERE counted_at > now() - interval '5 minutes'
"""


def rolled_until(conn) -> datetime | None:
    """Return the end of the rollup's newest hour; None when it is empty or stale."""
    return conn.execute(ROLLED_UNTIL).fetchone()[0]


def roll_up(conn, now: datetime | None = None) -> None:
    """Replace the rollup with the counts of the last 7 days' closed hours."""
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    with conn.transaction():
        conn.execute(CLEAR)
        for statement in ROLL_UP:
            conn.execute(statement, {"from": end - KEPT, "until": end})
