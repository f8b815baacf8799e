"""Read-only queries behind the ops console, cheap on tables of millions of rows:
every count is computed through indexes for the calls on one page only.

A webhook delivery belongs to a call when it names the call's ``call_sid`` or its
``conversation_id`` (the rollback path and post-call events name only the latter).
"""

from psycopg.rows import class_row, namedtuple_row

from console import search
from models import webhook_deliveries
from models.calls import BIGINT_MAX

# Every outcome not answered with a 2xx: what the list's "rejected" shows.
REJECTED = [o for o, status in webhook_deliveries.STATUS.items() if status >= 300]
# Enough to read what was sent; a body can be up to the request size limit.
BODY_PREVIEW_BYTES = 2000
MAX_DELIVERIES = 200

# Per call on the page: its transcript lines, and the deliveries naming it, accepted or not.
# UNION, not an OR: each half is a plain lookup on its own index, and a delivery naming
# both identifiers is still counted once.
PAGE_COUNTS = """
SELECT page.call_sid,
       (SELECT count(*) FROM transcriptions t
         WHERE t.conversation_id = page.conversation_id) AS lines,
       count(d.id) FILTER (WHERE d.http_status < 300) AS accepted,
       count(d.id) FILTER (WHERE d.http_status >= 300) AS rejected
  FROM unnest(%s::text[], %s::text[]) AS page (call_sid, conversation_id)
  LEFT JOIN LATERAL (
        SELECT id, http_status FROM webhook_deliveries WHERE call_sid = page.call_sid
        UNION
        SELECT id, http_status FROM webhook_deliveries WHERE conversation_id = page.conversation_id
       ) d ON true
 GROUP BY page.call_sid, page.conversation_id
"""

# Only the start of the body is read, into ``body``: a body may be megabytes.
DELIVERY_COLUMNS = """
    id, received_at, endpoint, signature_valid, signature_header,
    substring(body FROM 1 FOR %(preview)s) AS body, body_size, body_truncated, event_type,
    call_sid, conversation_id, outcome, reason, http_status, replay_count, replayed_at,
    replay_outcome, replay_reason
"""

CALL_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
 WHERE call_sid = %(call_sid)s OR conversation_id = %(conversation_id)s
 ORDER BY id DESC LIMIT %(limit)s
"""

# Two statements, not one with "IS NULL OR": a prepared statement's generic plan
# could not choose between them. Unfiltered: a backward walk of the primary key.
# By outcome: the (outcome, received_at) index, so the cost follows those rows only.
LATEST_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
 WHERE id < %(before)s
 ORDER BY id DESC LIMIT %(limit)s
"""

LATEST_DELIVERIES_OF = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
 WHERE id < %(before)s AND outcome = ANY(%(outcomes)s)
 ORDER BY id DESC LIMIT %(limit)s
"""


def page_counts(conn, page: list) -> dict:
    """Return {call_sid: (lines, accepted, rejected)} for the calls on a page."""
    if not page:  # a filter that matches nothing: no need to ask
        return {}
    sids, conversations = [c.call_sid for c in page], [c.conversation_id for c in page]
    with conn.cursor(row_factory=namedtuple_row) as cur:
        rows = cur.execute(PAGE_COUNTS, (sids, conversations)).fetchall()
    return {row.call_sid: row for row in rows}


def deliveries(conn, query: str, **params) -> list[webhook_deliveries.Delivery]:
    """Return the webhook deliveries a query finds, with the start of each body."""
    with conn.cursor(row_factory=class_row(webhook_deliveries.Delivery)) as cur:
        return cur.execute(query, {"preview": BODY_PREVIEW_BYTES, **params}).fetchall()


def of_call(conn, call) -> list[webhook_deliveries.Delivery]:
    """Return the newest webhook deliveries that named this call, accepted or not."""
    ids = {"call_sid": call.call_sid, "conversation_id": call.conversation_id}
    return deliveries(conn, CALL_DELIVERIES, **ids, limit=MAX_DELIVERIES)


def latest(conn, *, outcome: str | None, before_id: int | None, limit: int) -> search.Page:
    """Return a page of the newest webhook deliveries (of an outcome, or any refused one)."""
    query = LATEST_DELIVERIES_OF if outcome else LATEST_DELIVERIES
    outcomes = REJECTED if outcome == "rejected" else [outcome]
    # The first page: every id is below the largest bigint.
    before = before_id or BIGINT_MAX
    found = deliveries(conn, query, before=before, outcomes=outcomes, limit=limit + 1)
    return search.paged(found, limit)
