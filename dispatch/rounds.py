"""One pass of the dispatch worker (settle, claim, dial), and the loop a worker's task runs.

``claim`` holds one advisory lock every worker takes while it counts the calls in
flight (``initiating`` or ``initiated``, younger than ``CALL_MAX_MINUTES``, single calls
included), picks at most as many due entries as there are free slots, skipping numbers
with a call in flight, and writes each one's call row. The next worker's count sees
those calls: the cap holds across hosts, and no number gets two calls in flight. While
an entry waits out a 429's backoff, nothing is claimed: the limit is the account's.

The worker that dialled moves its entry out of ``dialling``; ``settle`` moves entries
on as their calls end (webhooks, or reconciliation). An entry whose call is still
``initiating`` (perhaps placed: a worker died mid-dial) waits for reconciliation to
settle it: it is never redialled blind; once reconciliation proves it was never placed,
the entry is queued again. ``now`` is passed in, so tests move the clock.
"""

import random
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from dispatch.placing import CallOrder, PlacedCall, dial
from dispatch.settings import DispatchSettings
from dispatch.windows import Window, is_open, next_opening
from elevenlabs.client import ElevenLabsClient
from models import calls
from observability import metrics

DIALS_AT_ONCE = 8  # per worker; the cap across workers is MAX_CONCURRENT_CALLS
PAUSE_SECONDS = 0.2  # between rounds while every slot is taken
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
               AND e.no_answer_redials < b.redial_no_answer AS redial_no_answer,
           -- Reconciliation proved ElevenLabs never placed it: the driver was not
           -- called, so queue it again at once; like a 429, not an attempt. Only
           -- from dialling: an entry in_call had its dial accepted by ElevenLabs.
           e.state = 'dialling' AND c.status = 'failed' AND c.failure_reason = %(never_placed)s
               AND b.status <> 'cancelled' AS never_placed
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
                    WHEN ended.never_placed THEN 'queued'
                    ELSE 'failed' END,
       busy_redials = e.busy_redials + ended.redial_busy::int,
       no_answer_redials = e.no_answer_redials + ended.redial_no_answer::int,
       next_attempt_at = CASE WHEN ended.redial_busy OR ended.redial_no_answer
                              THEN %(now)s + make_interval(mins => ended.spacing_minutes::int)
                              WHEN ended.never_placed THEN %(now)s
                              ELSE e.next_attempt_at END,
       updated_at = now()
  FROM ended
 WHERE e.id = ended.id
"""

# A batch whose entries are all final (batches.FINISHED_ENTRIES, spelled out) is done.
FINISH_BATCHES = """
UPDATE call_batches b SET status = 'completed', updated_at = now()
 WHERE b.status IN ('pending', 'running')
   AND NOT EXISTS (SELECT 1 FROM call_batch_entries e
                    WHERE e.batch_id = b.id
                      AND e.state NOT IN ('completed', 'failed', 'suppressed', 'cancelled'))
"""


# Arbitrary but fixed: every dispatch worker of this project counts and claims under it.
CAP_LOCK_KEY = 7_140_203_015

NUMBERS_IN_FLIGHT = """
SELECT phone_number FROM calls
 WHERE status IN ('initiating', 'initiated')
   AND created_at > now() - make_interval(secs => %s)
"""

# ElevenLabs' 429 speaks for the whole account: while an entry waits out its backoff
# (put back ``queued`` with ``backoffs`` > 0, due within MAX_BACKOFF_SECONDS), no entry
# is claimed. The range keeps the look-up a short scan of the due index.
PAUSED_BY_A_429 = """
SELECT EXISTS (
    SELECT 1 FROM call_batch_entries e JOIN call_batches b ON b.id = e.batch_id
     WHERE e.state = 'queued' AND e.backoffs > 0
       AND e.next_attempt_at > %(now)s
       AND e.next_attempt_at <= %(now)s + make_interval(secs => %(longest)s)
       AND b.status IN ('pending', 'running'))
"""

DUE_ENTRIES = """
SELECT e.id, e.backoffs, e.driver_id, e.phone_number, e.driver_name, e.variables, e.timezone,
       b.id AS batch, b.window_start, b.window_end,
       -- The batch's agent, else the configured one.
       COALESCE(b.agent_id, %(agent_id)s) AS agent_id,
       COALESCE(b.agent_phone_number_id, %(agent_phone_number_id)s) AS agent_phone_number_id,
       EXISTS (SELECT 1 FROM suppressions s WHERE s.phone_number = e.phone_number) AS suppressed
  FROM call_batch_entries e
  JOIN call_batches b ON b.id = e.batch_id
 WHERE e.state IN ('queued', 'waiting_window', 'redial_scheduled')
   AND e.next_attempt_at <= %(now)s
   AND b.status IN ('pending', 'running')
   AND e.phone_number <> ALL (%(busy)s)
 ORDER BY e.next_attempt_at, e.id
 LIMIT %(limit)s
   FOR UPDATE OF e SKIP LOCKED
"""

START_DIALLING = """
WITH entry AS (
    UPDATE call_batch_entries SET state = 'dialling', current_call_sid = %(call_sid)s,
                                  updated_at = now()
     WHERE id = %(entry)s
    RETURNING id
), batch AS (
    UPDATE call_batches SET status = 'running', updated_at = now()
     WHERE id = %(batch)s AND status = 'pending'
)
INSERT INTO call_batch_attempts (entry_id, call_sid) SELECT id, %(call_sid)s FROM entry
"""


DUE_NOW = """
SELECT count(*) FROM call_batch_entries e JOIN call_batches b ON b.id = e.batch_id
 WHERE e.state IN ('queued', 'waiting_window', 'redial_scheduled')
   AND e.next_attempt_at <= %s AND b.status IN ('pending', 'running')
"""


@dataclass(frozen=True)
class Claim:
    """An entry whose call is written: it is to be dialled now, by the worker that claimed it."""

    entry_id: int
    backoffs: int  # 429s in a row so far: how long the next one waits
    call: calls.Call
    order: CallOrder


@dataclass(frozen=True)
class Worker:
    """What a round needs: the pool, the ElevenLabs client, the settings, the default agent."""

    pool: ConnectionPool
    client: ElevenLabsClient
    settings: DispatchSettings
    defaults: dict


def run_round(worker: Worker, now: datetime | None = None) -> int:
    """Settle, claim and dial once; return how many calls were dialled."""
    now = now or datetime.now(UTC)
    with worker.pool.connection() as conn:
        settle(conn, now)
        claimed = claim(conn, worker.settings, worker.defaults, now, limit=DIALS_AT_ONCE)
    if claimed:
        with ThreadPoolExecutor(max_workers=len(claimed)) as dials:
            list(dials.map(lambda one: dial_claim(worker, one, now), claimed))
    return len(claimed)


def dial_claim(worker: Worker, claimed: Claim, now: datetime) -> None:
    """Dial one claimed entry and move it on; no pooled connection waits on ElevenLabs."""
    with worker.pool.connection() as conn:
        # Read after the row's commit and before the request: created_at <= api_called_at
        # then compares two readings of one clock.
        called_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    with ExitStack() as held:
        connect = cache(lambda: held.enter_context(worker.pool.connection()))
        placed = dial(
            connect, worker.client, claimed.call, claimed.order, called_at, hold_if_unsure=True
        )
        record_dial(connect(), claimed.entry_id, claimed.backoffs, placed, now)


def dispatch_until_idle(worker: Worker, max_seconds: float) -> int:
    """Run rounds while entries are due, for at most ``max_seconds``; return the dials."""
    deadline, dialled = time.monotonic() + max_seconds, 0
    while time.monotonic() < deadline:
        done = run_round(worker)
        dialled += done
        if not done:
            with worker.pool.connection() as conn:
                if not conn.execute(DUE_NOW, (datetime.now(UTC),)).fetchone()[0]:
                    break
            time.sleep(PAUSE_SECONDS)  # every slot taken: wait for a call to end
    return dialled


def claim(conn, settings: DispatchSettings, defaults: dict, now: datetime, limit: int) -> list:
    """Write the calls of up to ``limit`` due entries, within the cap; return them to dial."""
    claimed = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CAP_LOCK_KEY,))
        minutes = settings.call_max_minutes
        in_flight = [row[0] for row in conn.execute(NUMBERS_IN_FLIGHT, (minutes * 60,))]
        free = min(limit, settings.max_concurrent_calls - len(in_flight))
        if free <= 0:
            return []
        paused = {"now": now, "longest": MAX_BACKOFF_SECONDS}
        if conn.execute(PAUSED_BY_A_429, paused).fetchone()[0]:
            return []
        busy = set(in_flight)
        with conn.cursor(row_factory=dict_row) as cur:
            agent = {
                "agent_id": defaults["ELEVENLABS_AGENT_ID"],
                "agent_phone_number_id": defaults["ELEVENLABS_PHONE_NUMBER_ID"],
            }
            params = {"now": now, "busy": list(busy), "limit": free, **agent}
            due = cur.execute(DUE_ENTRIES, params).fetchall()
        for entry in due:
            taken = take(conn, entry, busy, now)
            if taken:
                busy.add(entry["phone_number"])
                claimed.append(taken)
    return claimed


def take(conn, entry: dict, busy: set, now: datetime) -> Claim | None:
    """Write the entry's call and mark it dialling; or say why not now (suppressed, window)."""
    if entry["suppressed"]:
        set_state(conn, entry["id"], "suppressed")
        return None
    window = Window(entry["window_start"], entry["window_end"])
    zone = ZoneInfo(entry["timezone"])
    if not is_open(window, zone, now):
        set_state(conn, entry["id"], "waiting_window", next_opening(window, zone, now))
        return None
    if entry["phone_number"] in busy:  # the same number due in two batches at once
        return None
    order = CallOrder(**{field.name: entry[field.name] for field in fields(CallOrder)})
    call = calls.create(
        conn,
        driver_id=order.driver_id,
        phone_number=order.phone_number,
        driver_name=order.driver_name,
    )
    params = {"call_sid": call.call_sid, "entry": entry["id"], "batch": entry["batch"]}
    conn.execute(START_DIALLING, params)
    return Claim(entry["id"], entry["backoffs"], call, order)


def set_state(conn, entry_id: int, state: str, next_attempt_at: datetime | None = None) -> None:
    """Move an entry to ``state``, due again at ``next_attempt_at`` when given."""
    conn.execute(
        """
        UPDATE call_batch_entries
           SET state = %s, next_attempt_at = COALESCE(%s, next_attempt_at), updated_at = now()
         WHERE id = %s
        """,
        (state, next_attempt_at, entry_id),
    )


def backoff_seconds(backoffs: int) -> float:
    """Return the wait after the n-th 429 in a row: exponential, capped, half of it jittered."""
    ceiling = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**backoffs)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not a secret)


def record_dial(conn, entry_id: int, backoffs: int, placed: PlacedCall, now: datetime) -> None:
    """Move a dialled entry on: in_call, back in the queue after a 429, or failed;
    left dialling when its call may have been placed, for ``settle`` to move on.

    ``backoffs`` counts the 429s in a row: any other answer starts the count again,
    so a redial days later does not wait as long as the last of an earlier run of 429s.
    """
    again_at, in_a_row = None, 0
    if placed.error is None:
        state = "in_call"
    elif placed.error.kind == "rate_limited":  # ElevenLabs' 429: not placed, not an attempt
        state, in_a_row = "queued", backoffs + 1
        metrics.record_batch_backoff()
        again_at = now + timedelta(seconds=backoff_seconds(backoffs))
    elif placed.error.may_have_dialled:  # its call stays initiating until it is settled
        state = "dialling"
    else:
        state = "failed"
    params = {"state": state, "again_at": again_at, "backoffs": in_a_row, "entry": entry_id}
    conn.execute(RECORD_DIAL, params)


def settle(conn, now: datetime) -> int:
    """Move entries on whose calls ended; mark finished batches completed; return the count."""
    with conn.transaction():
        params = {"now": now, "orphan_after": ORPHAN_AFTER, "never_placed": calls.NEVER_PLACED}
        moved = conn.execute(SETTLE, params).rowcount
        conn.execute(FINISH_BATCHES)
    return moved
