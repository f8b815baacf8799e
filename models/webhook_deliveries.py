"""The webhook delivery log: every request to a webhook endpoint, accepted or not.

ElevenLabs never retries a 4xx, so this log is the only record of what was
rejected; a rejected delivery is replayed from here once its cause is fixed.
"""

from dataclasses import dataclass, field, fields
from datetime import datetime

from psycopg.rows import class_row

TRANSCRIPTION = "transcription"
POST_CALL = "post-call"

# Outcomes of a delivery.
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

SETTLED = (ACCEPTED, DUPLICATE, ACKNOWLEDGED, STALE)
# A bad signature is never replayed: its body is not known to come from ElevenLabs.
REPLAYABLE = (REJECTED_MALFORMED, UNKNOWN_CALL, NO_CONVERSATION_ID, CONFLICT, ERROR)
# The HTTP status each outcome is answered with.
STATUS = {
    **dict.fromkeys(SETTLED, 200),
    REJECTED_SIGNATURE: 401,
    **dict.fromkeys(REPLAYABLE, 400),
    ERROR: 500,
}


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: the outcome code, why, and what the body named."""

    outcome: str
    reason: str | None = None
    identifiers: dict = field(default_factory=dict)
    delivery_id: int | None = None  # set when the line's statement also recorded the delivery
    # (status, verdict) of the call this delivery ended: counted once its transaction commits.
    ended: tuple[str, str | None] | None = None

    @property
    def status(self) -> int:
        return STATUS[self.outcome]


@dataclass(frozen=True)
class Received:
    """A delivery's own columns in the log: what arrived, as much of the body as is kept."""

    endpoint: str
    signature_valid: bool | None
    signature_header: str | None
    body: bytes
    body_size: int
    body_truncated: bool


@dataclass(frozen=True)
class Delivery(Received):
    """A row of ``webhook_deliveries``: what was received, and what became of it."""

    id: int
    received_at: datetime
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


COLUMNS = ", ".join(column.name for column in fields(Delivery))


def record(conn, received: Received, outcome: Outcome, *, http_status: int | None = None) -> int:
    """Insert one delivery with its outcome; return its id.

    ``http_status`` overrides the outcome's usual one (a 503 for a database error).
    """
    return conn.execute(
        """
        INSERT INTO webhook_deliveries (
            endpoint, signature_valid, signature_header, body, body_size, body_truncated,
            event_type, call_sid, conversation_id, outcome, reason, http_status)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING id
        """,
        (
            received.endpoint,
            received.signature_valid,
            received.signature_header,
            received.body,
            received.body_size,
            received.body_truncated,
            outcome.identifiers.get("event_type"),
            outcome.identifiers.get("call_sid"),
            outcome.identifiers.get("conversation_id"),
            outcome.outcome,
            outcome.reason,
            http_status or outcome.status,
        ),
    ).fetchone()[0]


def lock(conn, delivery_id: int) -> Delivery | None:
    """Return a delivery locked for replay (inside the caller's transaction), or None."""
    query = f"SELECT {COLUMNS} FROM webhook_deliveries WHERE id = %s FOR UPDATE"
    return conn.cursor(row_factory=class_row(Delivery)).execute(query, (delivery_id,)).fetchone()


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


def record_replay(conn, delivery_id: int, outcome: Outcome) -> None:
    """Note a replay's outcome on the delivery; its outcome at receipt stays as it was."""
    conn.execute(
        """
        UPDATE webhook_deliveries
           SET replay_count = replay_count + 1, replayed_at = now(),
               replay_outcome = %s, replay_reason = %s
         WHERE id = %s
        """,
        (outcome.outcome, outcome.reason, delivery_id),
    )
