"""The Call: one outbound call to a driver, from the row written before dialling to its end.

Status: ``initiating`` → ``initiated`` → ``completed``, or → ``failed``; ``completed``
is final and ``failed`` gives way only to ``completed`` (a post-call transcript
proves the call happened, e.g. after our request timed out), which clears the
failure. Every transition is one guarded UPDATE, so a late or repeated webhook
never moves a call backwards.
"""

import secrets
from dataclasses import dataclass, fields
from datetime import datetime

from psycopg.rows import class_row

BIGINT_MAX = 2**63 - 1  # driver_id and ids are PostgreSQL bigints

INITIATING = "initiating"
INITIATED = "initiated"
FAILED = "failed"
COMPLETED = "completed"
# The failure_reason of a call reconciliation proved ElevenLabs never placed.
NEVER_PLACED = "never placed"


@dataclass
class Call:
    id: int
    call_sid: str
    driver_id: int | None
    driver_name: str | None
    phone_number: str | None
    conversation_id: str | None
    status: str
    failure_reason: str | None
    twilio_call_sid: str | None
    created_at: datetime
    updated_at: datetime
    api_called_at: datetime | None
    initiated_at: datetime | None
    failed_at: datetime | None
    completed_at: datetime | None
    call_duration_secs: int | None
    termination_reason: str | None


COLUMNS = ", ".join(field.name for field in fields(Call))


def new_call_sid() -> str:
    """Return a fresh, unguessable call_sid (the same shape as the column default)."""
    return "cs_" + secrets.token_hex(16)


def _one(conn, query, params) -> Call | None:
    return conn.cursor(row_factory=class_row(Call)).execute(query, params).fetchone()


def create(conn, *, driver_id: int, phone_number: str, driver_name: str | None = None) -> Call:
    """Insert a call in ``initiating`` with a fresh call_sid and no conversation."""
    return _one(
        conn,
        f"""
        INSERT INTO calls (call_sid, driver_id, driver_name, phone_number, status)
        VALUES (%s, %s, %s, %s, %s)
        RETURNING {COLUMNS}
        """,
        (new_call_sid(), driver_id, driver_name, phone_number, INITIATING),
    )


def create_unless_suppressed(
    conn, *, call_sid: str, driver_id: int, phone_number: str, driver_name: str | None
) -> tuple[Call, datetime] | None:
    """Insert a call ``initiating`` unless its number is suppressed; return it and the clock.

    The clock is the database's, read once the row is written (``created_at`` is
    the statement's start): the call's ``api_called_at``, so ``created_at <=
    api_called_at`` compares two readings of one clock, in one round trip.
    """
    row = conn.execute(
        f"""
        INSERT INTO calls (call_sid, driver_id, driver_name, phone_number, status)
        SELECT %s, %s, %s, %s, %s
         WHERE NOT EXISTS (SELECT 1 FROM suppressions WHERE phone_number = %s)
        RETURNING {COLUMNS}, clock_timestamp()
        """,
        (call_sid, driver_id, driver_name, phone_number, INITIATING, phone_number),
    ).fetchone()
    return None if row is None else (Call(*row[:-1]), row[-1])


def by_call_sid(conn, call_sid: str) -> Call | None:
    return _one(conn, f"SELECT {COLUMNS} FROM calls WHERE call_sid = %s", (call_sid,))


def by_conversation_id(conn, conversation_id: str) -> Call | None:
    return _one(conn, f"SELECT {COLUMNS} FROM calls WHERE conversation_id = %s", (conversation_id,))


def by_twilio_call_sid(conn, twilio_call_sid: str) -> list[Call]:
    """Return the calls Twilio knows by this SID (a last resort for post-call events).

    The column is not unique: two are returned when more than one call has it, so
    the caller can refuse to guess rather than take whichever comes first.
    """
    query = f"SELECT {COLUMNS} FROM calls WHERE twilio_call_sid = %s ORDER BY id LIMIT 2"
    return conn.cursor(row_factory=class_row(Call)).execute(query, (twilio_call_sid,)).fetchall()


def mark_initiated(
    conn,
    call_sid: str,
    *,
    conversation_id: str | None,
    twilio_call_sid: str | None,
    api_called_at: datetime,
    note: str | None = None,
) -> Call | None:
    """Record ElevenLabs' acceptance: ``initiating`` → ``initiated``, keeping its ids.

    The ids are kept even when a webhook already moved the call on (it can
    outrun ElevenLabs' answer to us); only the status move is guarded. ``note``
    (something wrong with the answer) goes to ``failure_reason``.
    """
    return _one(
        conn,
        f"""
        UPDATE calls
           SET status = CASE WHEN status = 'initiating' THEN 'initiated' ELSE status END,
               initiated_at = CASE WHEN status = 'initiating' THEN now() ELSE initiated_at END,
               conversation_id = COALESCE(conversation_id, %s),
               twilio_call_sid = COALESCE(twilio_call_sid, %s),
               api_called_at = COALESCE(api_called_at, %s),
               failure_reason = COALESCE(%s, failure_reason),
               updated_at = now()
         WHERE call_sid = %s
        RETURNING {COLUMNS}
        """,
        (conversation_id, twilio_call_sid, api_called_at, note, call_sid),
    )


def mark_failed(
    conn, call_sid: str, *, reason: str, api_called_at: datetime | None = None
) -> Call | None:
    """Record why the call did not happen; a completed or already failed call is left alone."""
    return _one(
        conn,
        f"""
        UPDATE calls
           SET status = 'failed', failure_reason = %s,
               api_called_at = COALESCE(api_called_at, %s),
               failed_at = now(), updated_at = now()
         WHERE call_sid = %s AND status NOT IN ('failed', 'completed')
        RETURNING {COLUMNS}
        """,
        (reason, api_called_at, call_sid),
    )


def attach_conversation(conn, call_sid: str, conversation_id: str) -> Call | None:
    """Give a call its conversation_id when it has none yet (a null one from the API)."""
    return _one(
        conn,
        f"""
        UPDATE calls SET conversation_id = %s, updated_at = now()
         WHERE call_sid = %s AND conversation_id IS NULL
        RETURNING {COLUMNS}
        """,
        (conversation_id, call_sid),
    )


def mark_completed(
    conn,
    call_sid: str,
    *,
    call_duration_secs: int | None,
    termination_reason: str | None,
    twilio_call_sid: str | None,
) -> Call | None:
    """Record the end of a call from its post-call webhook; a completed call is left alone.

    A failed call that completes (our request timed out, yet it was placed) no
    longer shows the failure: the delivery log keeps what it went through.
    """
    return _one(
        conn,
        f"""
        UPDATE calls
           SET status = 'completed', completed_at = now(), updated_at = now(),
               failed_at = NULL,
               failure_reason = CASE WHEN status IN ('failed', 'initiating') THEN NULL
                                   ELSE failure_reason END,
               call_duration_secs = COALESCE(%s, call_duration_secs),
               termination_reason = COALESCE(%s, termination_reason),
               twilio_call_sid = COALESCE(twilio_call_sid, %s)
         WHERE call_sid = %s AND status <> 'completed'
        RETURNING {COLUMNS}
        """,
        (call_duration_secs, termination_reason, twilio_call_sid, call_sid),
    )


def stuck_initiating(conn, *, older_than_minutes: float, limit: int = 100) -> list[Call]:
    """Return calls still ``initiating`` after this long: the process died mid-call."""
    # The status written out, not bound: a prepared generic plan can then still
    # use the partial index calls_initiating_created_at_idx (007).
    query = f"""
        SELECT {COLUMNS} FROM calls
         WHERE status = 'initiating' AND created_at < now() - make_interval(secs => %s)
         ORDER BY created_at
         LIMIT %s
    """
    rows = conn.cursor(row_factory=class_row(Call)).execute(query, (older_than_minutes * 60, limit))
    return rows.fetchall()


def note_may_have_dialled(
    conn, call_sid: str, *, reason: str, api_called_at: datetime | None = None
) -> Call | None:
    """Record why ElevenLabs' answer is unknown on a call it may have placed, left ``initiating``.

    Not ``failed``, a final status: the call must go on counting in flight (no second
    call to the number, the cap holds) until its webhook or reconciliation settles it.
    A call a webhook already moved on is left alone.
    """
    return _one(
        conn,
        f"""
        UPDATE calls
           SET failure_reason = %s, api_called_at = COALESCE(api_called_at, %s),
               updated_at = now()
         WHERE call_sid = %s AND status = 'initiating'
        RETURNING {COLUMNS}
        """,
        (reason, api_called_at, call_sid),
    )
