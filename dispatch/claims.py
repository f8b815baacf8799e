"""What may be dialled now: due entries claimed under the concurrency cap.

``claim`` holds one advisory lock every worker takes while it counts the calls in
flight, picks at most as many due entries as there are free slots (skipping numbers
with a call in flight) and writes each one's call row (``initiating``). The next
worker's count sees those calls, so the cap holds across workers and hosts and no
number gets two calls in flight, with nothing kept in a process's memory.

In flight = ``initiating`` or ``initiated`` and younger than ``CALL_MAX_MINUTES``
(past that, reconciliation settles the call), single calls included.
"""

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row

from dispatch.placing import CallOrder
from dispatch.settings import DispatchSettings
from dispatch.windows import Window, is_open, next_opening
from models import calls

# Arbitrary but fixed: every dispatch worker of this project counts and claims under it.
CAP_LOCK_KEY = 7_140_203_015

NUMBERS_IN_FLIGHT = """
SELECT phone_number FROM calls
 WHERE status IN ('initiating', 'initiated')
   AND created_at > now() - make_interval(secs => %s)
"""

DUE_ENTRIES = """
SELECT e.id, e.backoffs, e.driver_id, e.phone_number, e.driver_name, e.variables, e.timezone,
       b.id AS batch, b.window_start, b.window_end, b.agent_id, b.agent_phone_number_id,
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


@dataclass(frozen=True)
class Claim:
    """An entry whose call is written: it is to be dialled now, by the worker that claimed it."""

    entry_id: int
    backoffs: int  # 429s in a row so far: how long the next one waits
    call: calls.Call
    order: CallOrder


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
        busy = set(in_flight)
        with conn.cursor(row_factory=dict_row) as cur:
            params = {"now": now, "busy": list(busy), "limit": free}
            due = cur.execute(DUE_ENTRIES, params).fetchall()
        for entry in due:
            taken = take(conn, entry, busy, defaults, now)
            if taken:
                busy.add(entry["phone_number"])
                claimed.append(taken)
    return claimed


def take(conn, entry: dict, busy: set, defaults: dict, now: datetime) -> Claim | None:
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
    order = CallOrder(
        driver_id=entry["driver_id"],
        phone_number=entry["phone_number"],
        driver_name=entry["driver_name"],
        variables=entry["variables"],
        # The batch's agent, else the configured one.
        agent_id=entry["agent_id"] or defaults["ELEVENLABS_AGENT_ID"],
        agent_phone_number_id=entry["agent_phone_number_id"]
        or defaults["ELEVENLABS_PHONE_NUMBER_ID"],
    )
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
