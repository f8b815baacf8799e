"""The webhook delivery log: every request to a webhook endpoint, accepted or not.

ElevenLabs never retries a 4xx, so this log is the only record of what was
rejected; a rejected delivery is replayed from here once its cause is fixed.
Functions take a connection first and never commit on their own account.
"""

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

TRANSCRIPTION = "transcription"
POST_CALL = "post-call"

# Outcomes, and the HTTP status each is answered with.
ACCEPTED = "accepted"  # something was saved or a call moved on
DUPLICATE = "duplicate"  # already saved: nothing changed
ACKNOWLEDGED = "acknowledged"  # an event type we do not store (audio, unknown types)
STALE = "stale"  # a late event a call's final status overrides
REJECTED_SIGNATURE = "rejected_signature"
REJECTED_MALFORMED = "rejected_malformed"
UNKNOWN_CALL = "unknown_call"
NO_CONVERSATION_ID = "no_conversation_id"
CONFLICT = "conflict"  # the delivery contradicts what we already know
ERROR = "error"  # our fault: a bug or the database; retried by ElevenLabs if enabled

STATUS = {
    ACCEPTED: 200,
    DUPLICATE: 200,
    ACKNOWLEDGED: 200,
    STALE: 200,
    REJECTED_SIGNATURE: 401,
    REJECTED_MALFORMED: 400,
    UNKNOWN_CALL: 400,
    NO_CONVERSATION_ID: 400,
    CONFLICT: 400,
    ERROR: 500,
}
SETTLED = (ACCEPTED, DUPLICATE, ACKNOWLEDGED, STALE)
# A bad signature is never replayed: its body is not known to come from ElevenLabs.
REPLAYABLE = (REJECTED_MALFORMED, UNKNOWN_CALL, NO_CONVERSATION_ID, CONFLICT, ERROR)


@dataclass
class Delivery:
    """A row of ``webhook_deliveries``."""

    id: int
    received_at: datetime
    endpoint: str
    signature_valid: bool | None
    signature_header: str | None
    body: bytes
    body_size: int
    body_truncated: bool
    event_type: str | None
    call_sid: str | None
    conversation_id: str | None
    outcome: str
    reason: str | None
    http_status: int
    replay_count: int
    replayed_at: datetime | None
    replay_outcome: str | None
    replay_reason: str | None


COLUMNS = """
    id, received_at, endpoint, signature_valid, signature_header, body, body_size,
    body_truncated, event_type, call_sid, conversation_id, outcome, reason, http_status,
    replay_count, replayed_at, replay_outcome, replay_reason
"""


def record(
    conn,
    *,
    outcome: str,
    reason: str | None,
    http_status: int | None = None,
    **delivery,
) -> int:
    """Insert one delivery with an outcome already decided; return its id.

    ``delivery`` is what ``record_statement`` takes (the request's columns and the
    identifiers). ``http_status`` is what the delivery was answered with, when not
    its outcome's usual one.
    """
    statement, params = record_statement(**delivery)
    verdict = """
        WITH verdict AS (
            SELECT %(v_outcome)s::text AS outcome, %(v_reason)s::text AS reason,
                   %(v_status)s::integer AS http_status
        )
    """
    params = {
        **params,
        "v_outcome": outcome,
        "v_reason": reason,
        "v_status": http_status or STATUS[outcome],
    }
    return conn.execute(verdict + statement, params).fetchone()[0]


def record_statement(
    *,
    endpoint: str,
    signature_valid: bool | None,
    signature_header: str | None,
    body: bytes,
    body_size: int,
    body_truncated: bool,
    identifiers: dict,
) -> tuple[str, dict]:
    """Return ``record`` as SQL taking outcome, reason and http_status from a CTE ``verdict``.

    For a statement that decides the outcome and records it at once (the per-line
    webhook): one statement, so the line and its record stand or fall together.
    It returns the new delivery's id.
    """
    return (
        """
        INSERT INTO webhook_deliveries (
            endpoint, signature_valid, signature_header, body, body_size, body_truncated,
            event_type, call_sid, conversation_id, outcome, reason, http_status)
        SELECT %(d_endpoint)s, %(d_signature_valid)s, %(d_signature_header)s, %(d_body)s,
               %(d_body_size)s, %(d_body_truncated)s, %(d_event_type)s, %(d_call_sid)s,
               %(d_conversation_id)s, outcome, reason, http_status
          FROM verdict
        RETURNING id
        """,
        {
            "d_endpoint": endpoint,
            "d_signature_valid": signature_valid,
            "d_signature_header": signature_header,
            "d_body": body,
            "d_body_size": body_size,
            "d_body_truncated": body_truncated,
            "d_event_type": identifiers.get("event_type"),
            "d_call_sid": identifiers.get("call_sid"),
            "d_conversation_id": identifiers.get("conversation_id"),
        },
    )


def lock(conn, delivery_id: int) -> Delivery | None:
    """Return a delivery locked for replay (inside the caller's transaction), or None."""
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM webhook_deliveries WHERE id = %s FOR UPDATE",
            (delivery_id,),
        ).fetchone()


def replay_candidates(conn, *, since: datetime) -> list[int]:
    """Return the ids of replayable deliveries received since then and not settled since."""
    rows = conn.execute(
        """
        SELECT id FROM webhook_deliveries
         WHERE received_at >= %s
           AND outcome = ANY(%s)
           AND signature_valid IS NOT FALSE
           AND NOT body_truncated
           AND (replay_outcome IS NULL OR replay_outcome <> ALL(%s))
         ORDER BY id
        """,
        (since, list(REPLAYABLE), list(SETTLED)),
    ).fetchall()
    return [row[0] for row in rows]


def record_replay(conn, delivery_id: int, *, outcome: str, reason: str | None) -> None:
    """Note a replay's outcome on the delivery; its outcome at receipt stays as it was."""
    conn.execute(
        """
        UPDATE webhook_deliveries
           SET replay_count = replay_count + 1, replayed_at = now(),
               replay_outcome = %s, replay_reason = %s
         WHERE id = %s
        """,
        (outcome, reason, delivery_id),
    )


def record_replay_statement(delivery_id: int) -> tuple[str, dict]:
    """Return ``record_replay`` as SQL taking outcome and reason from a CTE ``verdict``."""
    return (
        """
        UPDATE webhook_deliveries
           SET replay_count = replay_count + 1, replayed_at = now(),
               replay_outcome = verdict.outcome, replay_reason = verdict.reason
          FROM verdict
         WHERE id = %(d_id)s
        RETURNING id
        """,
        {"d_id": delivery_id},
    )


def outcome_counts(conn, *, since: datetime) -> list[tuple[str, str, int]]:
    """Return (endpoint, outcome, count) of deliveries received since then."""
    return conn.execute(
        """
        SELECT endpoint, outcome, count(*) FROM webhook_deliveries
         WHERE received_at >= %s
         GROUP BY endpoint, outcome
         ORDER BY endpoint, outcome
        """,
        (since,),
    ).fetchall()
