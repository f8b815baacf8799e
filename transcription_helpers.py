"""Finding the conversation a webhook belongs to, and saving what was said on it.

A line is (conversation_id, speaker, timestamp, message), unique by migration 013's
``transcriptions_line_key``; every insert is ``ON CONFLICT DO NOTHING`` with no target
on purpose: 013 runs after this code is deployed, and naming a key not there yet
would fail every line until it ran.
"""

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from psycopg.rows import class_row

from models import webhook_deliveries as deliveries


@dataclass(frozen=True)
class TranscriptLine:
    """One stored line of a call's transcript."""

    speaker: str
    message: str
    timestamp: datetime


@dataclass(frozen=True)
class LineSave:
    """What saving a per-line webhook found: the call it names, if any, and if the line was new."""

    call_sid: str | None
    conversation_id: str | None
    status: str | None
    new: bool
    delivery_id: int | None


# The two-step look-up and the save of a per-line webhook, in one statement (one
# round trip, one transaction): ``found`` is the call by call_sid, else (a rollback's
# legacy key) by conversation_id; ``line`` a row only when new; ``recorded`` the
# delivery's record, only with a new line and a delivery given (not on a replay).
# Exactly one row comes back, with NULLs when no call is named.
SAVE_WEBHOOK_LINE = """
    WITH found AS (
        SELECT call_sid, conversation_id, status FROM calls WHERE call_sid = %(call_sid)s
        UNION ALL
        SELECT call_sid, conversation_id, status FROM calls
         WHERE conversation_id = %(conversation_id)s
           AND NOT EXISTS (SELECT FROM calls WHERE call_sid = %(call_sid)s)
    ),
    line AS (
        INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp")
        SELECT conversation_id, %(speaker)s, %(message)s, %(timestamp)s
          FROM found
         WHERE conversation_id IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING 1
    ),
    recorded AS (
        INSERT INTO webhook_deliveries (
            endpoint, signature_valid, signature_header, body, body_size, body_truncated,
            call_sid, conversation_id, outcome, http_status)
        SELECT %(endpoint)s::text, %(signature_valid)s::boolean, %(signature_header)s::text,
               %(body)s::bytea, %(body_size)s::bigint, %(body_truncated)s::boolean,
               %(call_sid)s, %(conversation_id)s, %(outcome)s, %(http_status)s::bigint
         WHERE %(endpoint)s::text IS NOT NULL AND EXISTS (SELECT FROM line)
        RETURNING id
    )
    SELECT found.call_sid, found.conversation_id, found.status,
           EXISTS (SELECT FROM line) AS new, (SELECT id FROM recorded) AS delivery_id
      FROM (SELECT) AS one LEFT JOIN found ON true
"""

# A delivery's columns when there is none to record (a replay).
_NOT_RECORDED = dict.fromkeys(field.name for field in fields(deliveries.Received))


def save_webhook_line(
    conn,
    call_sid: str | None,
    conversation_id: str | None,
    line: TranscriptLine,
    received: deliveries.Received | None = None,
) -> LineSave:
    """Save a per-line webhook's line under its call's conversation; record ``received`` if new."""
    params = {
        "call_sid": call_sid,
        "conversation_id": conversation_id,
        **vars(line),
        **(vars(received) if received else _NOT_RECORDED),
        "outcome": deliveries.ACCEPTED,
        "http_status": deliveries.STATUS[deliveries.ACCEPTED],
    }
    with conn.cursor(row_factory=class_row(LineSave)) as cur:
        return cur.execute(SAVE_WEBHOOK_LINE, params).fetchone()


def save_post_call_transcript(
    conn, conversation_id: str, start: datetime, turns: Iterable[dict]
) -> int:
    """Save the turns with a message (not tool calls) of a transcript; return how many were new."""
    turns = [turn for turn in turns if turn.get("message") is not None]
    if not turns:
        return 0
    cur = conn.execute(
        """
        INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp")
        SELECT %s, speaker, message, at
          FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS line (speaker, message, at)
        ON CONFLICT DO NOTHING
        """,
        (
            conversation_id,
            [turn["role"] for turn in turns],
            [turn["message"] for turn in turns],
            [start + timedelta(seconds=turn["time_in_call_secs"]) for turn in turns],
        ),
    )
    return cur.rowcount


def transcript(conn, conversation_id: str | None) -> list[TranscriptLine]:
    """Return a conversation's lines in the order they were said (none without one)."""
    if conversation_id is None:
        return []
    with conn.cursor(row_factory=class_row(TranscriptLine)) as cur:
        return cur.execute(
            """
            SELECT speaker, message, "timestamp" FROM transcriptions
             WHERE conversation_id = %s
             ORDER BY "timestamp", id
            """,
            (conversation_id,),
        ).fetchall()
