"""Call batches in the database: create one with its entries, show it, cancel it."""

import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dispatch.windows import Window, next_opening

# queued: due at next_attempt_at; waiting_window: outside the driver's calling hours;
# dialling: its call written and ElevenLabs asked; in_call: ElevenLabs accepted;
# redial_scheduled: busy or no answer, redialled after the batch's spacing; then final.
ENTRY_STATES = (
    "queued",
    "waiting_window",
    "dialling",
    "in_call",
    "completed",
    "failed",
    "redial_scheduled",
    "suppressed",
    "cancelled",
)
FINISHED_ENTRIES = ("completed", "failed", "suppressed", "cancelled")  # never move again


def finished(counts: dict) -> int:
    """Return how many of a batch's entries are in a final state."""
    return sum(counts[state] for state in FINISHED_ENTRIES)


INSERT_BATCH = """
INSERT INTO call_batches (batch_id, name, window_start, window_end, not_before, redial_busy,
                          redial_no_answer, spacing_minutes, agent_id, agent_phone_number_id)
VALUES (%(batch_id)s, %(name)s, %(window_start)s, %(window_end)s, %(not_before)s, %(busy)s,
        %(no_answer)s, %(spacing_minutes)s, %(agent_id)s, %(agent_phone_number_id)s)
RETURNING id
"""

COPY_ENTRIES = """
COPY call_batch_entries (batch_id, driver_id, phone_number, driver_name, variables, timezone,
                         state, next_attempt_at)
FROM STDIN
"""

SUPPRESS_LISTED = """
UPDATE call_batch_entries SET state = 'suppressed'
 WHERE batch_id = %s AND phone_number IN (SELECT phone_number FROM suppressions)
"""


def create(conn, request: dict, *, window: Window, default_zone: ZoneInfo, now: datetime) -> str:
    """Write the batch and all its entries in one transaction; return its batch_id."""
    batch_id = "cb_" + secrets.token_hex(12)
    # In UTC: COPY writes the offset as given, and PostgreSQL refuses any past 15:59.
    due = max(now, request["not_before"] or now).astimezone(UTC)
    params = {**request, **request["redial"], "batch_id": batch_id}
    with conn.transaction():
        batch = conn.execute(
            INSERT_BATCH, {**params, "window_start": window.start, "window_end": window.end}
        ).fetchone()[0]
        with conn.cursor().copy(COPY_ENTRIES) as copy:
            for entry in request["calls"]:
                zone = ZoneInfo(entry["timezone"]) if entry["timezone"] else default_zone
                opens = next_opening(window, zone, due)  # due, or when the window opens
                state = "queued" if opens == due else "waiting_window"
                driver = [entry[name] for name in ("driver_id", "phone_number", "driver_name")]
                copy.write_row((batch, *driver, Jsonb(entry["variables"]), zone.key, state, opens))
        conn.execute(SUPPRESS_LISTED, (batch,))
    return batch_id


def show(conn, batch_id: str) -> dict | None:
    """Return the batch with its counts per state and its entries with their attempts."""
    with conn.cursor(row_factory=dict_row) as cur:
        batch = cur.execute(
            """
            SELECT id, batch_id, name, status, window_start, window_end, not_before,
                   redial_busy, redial_no_answer, spacing_minutes, created_at, cancelled_at,
                   json_build_object('start', to_char(window_start, 'HH24:MI'),
                                     'end', to_char(window_end, 'HH24:MI')) AS window,
                   json_build_object('busy', redial_busy, 'no-answer', redial_no_answer,
                                     'spacing_minutes', spacing_minutes) AS redial
              FROM call_batches WHERE batch_id = %s
            """,
            (batch_id,),
        ).fetchone()
        if batch is None:
            return None
        entries = cur.execute(
            """
            SELECT e.driver_id, e.phone_number, e.driver_name, e.timezone, e.state,
                   e.next_attempt_at, e.backoffs,
                   COALESCE(json_agg(json_build_object(
                       'call_sid', c.call_sid, 'status', c.status,
                       'failure_reason', c.failure_reason, 'created_at', c.created_at)
                       ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), '[]') AS attempts
              FROM call_batch_entries e
              LEFT JOIN call_batch_attempts a ON a.entry_id = e.id
              LEFT JOIN calls c ON c.call_sid = a.call_sid
             WHERE e.batch_id = %s
             GROUP BY e.id
             ORDER BY e.id
            """,
            (batch["id"],),
        ).fetchall()
    counts = dict.fromkeys(ENTRY_STATES, 0)
    for entry in entries:
        counts[entry["state"]] += 1
    return {**batch, "counts": counts, "done": finished(counts), "entries": entries}


def counted(conn, *, batch_id: str | None = None, limit: int = 50) -> list[dict]:
    """Return the newest batches (or the one named), each with its entries counted per state."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT b.batch_id, b.name, b.status, b.created_at,
                   COALESCE(jsonb_object_agg(e.state, e.n) FILTER (WHERE e.state IS NOT NULL),
                            '{}') AS counts
              FROM (SELECT * FROM call_batches
                     WHERE %(batch_id)s::text IS NULL OR batch_id = %(batch_id)s
                     ORDER BY id DESC LIMIT %(limit)s) AS b
              LEFT JOIN LATERAL (
                   SELECT state, count(*) AS n FROM call_batch_entries
                    WHERE batch_id = b.id GROUP BY state) AS e ON true
             GROUP BY b.id, b.batch_id, b.name, b.status, b.created_at
             ORDER BY b.id DESC
            """,
            {"batch_id": batch_id, "limit": limit},
        ).fetchall()
    for row in rows:
        row["counts"] = {**dict.fromkeys(ENTRY_STATES, 0), **row["counts"]}
        row["done"] = finished(row["counts"])
    return rows


def cancel(conn, batch_id: str) -> str | None:
    """Cancel the batch and every entry not dialled yet; return its status (None: unknown).

    An entry being dialled holds its row lock until its call is written: the UPDATE
    waits for it, then leaves it alone, so nothing is cancelled half-way. The entries
    are locked before the batch, the order a claim takes them in (it marks the batch
    running after locking its entries): the other order deadlocks with a first claim.
    """
    with conn.transaction():
        conn.execute(
            """
            UPDATE call_batch_entries SET state = 'cancelled', updated_at = now()
             WHERE batch_id = (SELECT id FROM call_batches WHERE batch_id = %s)
               AND state IN ('queued', 'waiting_window', 'redial_scheduled')
            """,
            (batch_id,),
        )
        row = conn.execute(
            """
            UPDATE call_batches
               SET status = CASE WHEN status IN ('pending', 'running') THEN 'cancelled'
                                 ELSE status END,
                   cancelled_at = CASE WHEN status IN ('pending', 'running') THEN now()
                                       ELSE cancelled_at END,
                   updated_at = now()
             WHERE batch_id = %s
            RETURNING status
            """,
            (batch_id,),
        ).fetchone()
    return None if row is None else row[0]
