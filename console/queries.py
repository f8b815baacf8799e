"""Read-only queries behind the ops console.

Cheap on tables of millions of rows: the page of calls comes from
``console.search`` (keyed by id), and every count here is computed only for
the calls on that page, through indexes, never for a whole table.

A webhook delivery belongs to a call when it names the call's ``call_sid`` or its
``conversation_id`` (the rollback path and post-call events name only the latter).
"""

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from models import webhook_deliveries
from models.calls import BIGINT_MAX
from ops import replay

# Enough to read what was sent; a body can be up to the request size limit.
BODY_PREVIEW_BYTES = 2000
MAX_DELIVERIES = 200

TRANSCRIPT_COUNTS = """
SELECT conversation_id, count(*)
  FROM transcriptions
 WHERE conversation_id = ANY(%s)
 GROUP BY conversation_id
"""

# UNION, not an OR in the join: each half is a plain lookup on its own index,
# and a delivery naming both identifiers is still counted once.
DELIVERY_COUNTS = """
WITH page (call_sid, conversation_id) AS (
    SELECT * FROM unnest(%s::text[], %s::text[])
), named AS (
    SELECT page.call_sid, d.id, d.http_status
      FROM page JOIN webhook_deliveries d ON d.call_sid = page.call_sid
    UNION
    SELECT page.call_sid, d.id, d.http_status
      FROM page JOIN webhook_deliveries d ON d.conversation_id = page.conversation_id
)
SELECT call_sid,
       count(*) FILTER (WHERE http_status < 300),
       count(*) FILTER (WHERE http_status >= 300)
  FROM named
 GROUP BY call_sid
"""

DELIVERY_COLUMNS = """
    id, received_at, endpoint, event_type, call_sid, conversation_id, signature_valid,
    outcome, reason, http_status, replay_count, replay_outcome, replay_reason,
    substring(body FROM 1 FOR %(preview)s) AS body_head, body_size, body_truncated
"""

CALL_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS}
  FROM webhook_deliveries
 WHERE call_sid = %(call_sid)s OR conversation_id = %(conversation_id)s
 ORDER BY id DESC
 LIMIT %(limit)s
"""

# Two statements, not one with "IS NULL OR": a prepared statement's generic plan
# could not choose between them. Unfiltered: a backward walk of the primary key.
# By outcome: the (outcome, received_at) index, so the cost follows those rows only.
LATEST_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS}
  FROM webhook_deliveries
 WHERE id < %(before)s
 ORDER BY id DESC
 LIMIT %(limit)s
"""

LATEST_DELIVERIES_OF = f"""
SELECT {DELIVERY_COLUMNS}
  FROM webhook_deliveries
 WHERE id < %(before)s AND outcome = ANY(%(outcomes)s)
 ORDER BY id DESC
 LIMIT %(limit)s
"""


@dataclass
class DeliveryRow:
    """A webhook delivery as the console shows it."""

    id: int
    received_at: datetime
    endpoint: str
    event_type: str | None
    call_sid: str | None
    conversation_id: str | None
    signature_valid: bool | None
    outcome: str
    reason: str | None
    http_status: int
    replay_count: int
    replay_outcome: str | None
    replay_reason: str | None
    body_head: bytes
    body_size: int
    body_truncated: bool

    @property
    def body_preview(self) -> str:
        """Return the start of the body as text; bytes that are not UTF-8 show as U+FFFD."""
        return bytes(self.body_head).decode("utf-8", errors="replace")

    @property
    def accepted(self) -> bool:
        """Say whether the delivery was answered with a 2xx."""
        return self.http_status < 300

    @property
    def replayable(self) -> bool:
        """Say whether a replay could apply it: refused for a cause that may be fixed, and
        not one ``ops replay`` turns down (settled since, unsigned, truncated)."""
        return self.outcome in webhook_deliveries.REPLAYABLE and replay.refusal(self) is None


def transcript_counts(conn, conversation_ids: list[str]) -> dict[str, int]:
    """Return how many transcript lines each of these conversations has."""
    if not conversation_ids:
        return {}
    return dict(conn.execute(TRANSCRIPT_COUNTS, (conversation_ids,)).fetchall())


def delivery_counts(conn, page: list) -> dict[str, dict[str, int]]:
    """Return {call_sid: {"accepted": n, "rejected": n}} for the calls on a page."""
    if not page:
        return {}
    rows = conn.execute(
        DELIVERY_COUNTS,
        ([c.call_sid for c in page], [c.conversation_id for c in page]),
    ).fetchall()
    return {sid: {"accepted": ok, "rejected": bad} for sid, ok, bad in rows}


def deliveries(conn, call_sid: str, conversation_id: str | None) -> list[DeliveryRow]:
    """Return the newest webhook deliveries that named this call, accepted or not."""
    with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        return cur.execute(
            CALL_DELIVERIES,
            {
                "call_sid": call_sid,
                "conversation_id": conversation_id,
                "preview": BODY_PREVIEW_BYTES,
                "limit": MAX_DELIVERIES,
            },
        ).fetchall()


def latest_deliveries(
    conn, *, limit: int, before_id: int | None, outcomes: list[str] | None
) -> list[DeliveryRow]:
    """Return the newest webhook deliveries first, optionally of these outcomes only."""
    with conn.cursor(row_factory=class_row(DeliveryRow)) as cur:
        return cur.execute(
            LATEST_DELIVERIES_OF if outcomes else LATEST_DELIVERIES,
            {
                # The first page: every id is below the largest bigint.
                "before": before_id or BIGINT_MAX,
                "outcomes": outcomes,
                "preview": BODY_PREVIEW_BYTES,
                "limit": limit,
            },
        ).fetchall()
