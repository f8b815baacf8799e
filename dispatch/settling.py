"""Entries follow their calls: what a dial answered, and how each call ended.

The worker that dialled moves its entry out of ``dialling`` (it knows the
answer); ``settle`` moves entries on as their calls end (webhooks, or
reconciliation): completed, redialled per the batch's policy, or failed. An
entry whose call is still ``initiating`` (perhaps placed: a worker died mid-dial)
is left alone until reconciliation settles that call: it is never redialled blind.
"""

import random
from datetime import datetime, timedelta

from dispatch.placing import PlacedCall
from observability import metrics

FIRST_BACKOFF_SECONDS = 5
MAX_BACKOFF_SECONDS = 300
# A worker that recorded ElevenLabs' answer and died before moving its entry on:
# after this long the entry follows its call like any other.
ORPHAN_AFTER = "2 minutes"

RECORD_DIAL = """
UPDATE call_batch_entries
   SET state = %(state)s, next_attempt_at = COALESCE(%(again_at)s, next_attempt_at),
       backoffs = %(backoffs)s, updated_at = now()
 WHERE id = %(entry)s AND state = 'dialling'
"""

SETTLE = """
WITH ended AS (
    SELECT e.id, c.status, b.spacing_minutes,
           c.status = 'failed' AND c.failure_reason = 'busy' AND b.status <> 'cancelled'
               AND e.busy_redials < b.redial_busy AS redial_busy,
           c.status = 'failed' AND c.failure_reason = 'no-answer' AND b.status <> 'cancelled'
               AND e.no_answer_redials < b.redial_no_answer AS redial_no_answer
      FROM call_batch_entries e
      JOIN calls c ON c.call_sid = e.current_call_sid
      JOIN call_batches b ON b.id = e.batch_id
     WHERE (e.state = 'in_call' AND c.status IN ('completed', 'failed'))
        OR (e.state = 'failed' AND c.status = 'completed')
        OR (e.state = 'dialling' AND c.status <> 'initiating'
            AND e.updated_at < now() - %(orphan_after)s::interval)
       FOR UPDATE OF e SKIP LOCKED
)
UPDATE call_batch_entries e
   SET state = CASE WHEN ended.status = 'initiated' THEN 'in_call'
                    WHEN ended.status = 'completed' THEN 'completed'
                    WHEN ended.redial_busy OR ended.redial_no_answer THEN 'redial_scheduled'
                    ELSE 'failed' END,
       busy_redials = e.busy_redials + ended.redial_busy::int,
       no_answer_redials = e.no_answer_redials + ended.redial_no_answer::int,
       next_attempt_at = CASE WHEN ended.redial_busy OR ended.redial_no_answer
                              THEN %(now)s + make_interval(mins => ended.spacing_minutes::int)
                              ELSE e.next_attempt_at END,
       updated_at = now()
  FROM ended
 WHERE e.id = ended.id
"""

FINISH_BATCHES = """
UPDATE call_batches b SET status = 'completed', updated_at = now()
 WHERE b.status IN ('pending', 'running')
   AND NOT EXISTS (SELECT 1 FROM call_batch_entries e
                    WHERE e.batch_id = b.id
                      AND e.state NOT IN ('completed', 'failed', 'suppressed', 'cancelled'))
"""


def backoff_seconds(backoffs: int) -> float:
    """Return the wait after the n-th 429 in a row: exponential, capped, half of it jittered."""
    ceiling = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**backoffs)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not a secret)


def record_dial(conn, entry_id: int, backoffs: int, placed: PlacedCall, now: datetime) -> None:
    """Move a dialled entry on: in_call, back in the queue after a 429, or failed.

    ``backoffs`` counts the 429s in a row: any other answer starts the count again,
    so a redial days later does not wait as long as the last of an earlier run of 429s.
    """
    again_at, in_a_row = None, 0
    if placed.error is None:
        state = "in_call"
    elif placed.rate_limited:  # not placed: not an attempt, just later
        state, in_a_row = "queued", backoffs + 1
        metrics.record_batch_backoff()
        again_at = now + timedelta(seconds=backoff_seconds(backoffs))
    else:
        state = "failed"
    params = {"state": state, "again_at": again_at, "backoffs": in_a_row, "entry": entry_id}
    conn.execute(RECORD_DIAL, params)


def settle(conn, now: datetime) -> int:
    """Move entries on whose calls ended; mark finished batches completed; return the count."""
    with conn.transaction():
        moved = conn.execute(SETTLE, {"now": now, "orphan_after": ORPHAN_AFTER}).rowcount
        conn.execute(FINISH_BATCHES)
    return moved
