"""Idempotency keys: which call a keyed call request created, and the answer it got."""

from dataclasses import dataclass, fields
from datetime import datetime

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from models import delete_in_batches


@dataclass
class IdempotencyKey:
    key: str
    request_hash: str
    call_sid: str
    response_status: int | None
    response_body: dict | None
    created_at: datetime


COLUMNS = ", ".join(column.name for column in fields(IdempotencyKey))


def claim(conn, key: str, request_hash: str, call_sid: str) -> IdempotencyKey | None:
    """Record ``key`` for the call about to be created; return the earlier holder, else None.

    A second request with the key waits here until the first one's transaction
    ends, then sees its row.
    """
    claimed = conn.execute(
        """
        INSERT INTO idempotency_keys (key, request_hash, call_sid)
        VALUES (%s, %s, %s)
        ON CONFLICT (key) DO NOTHING
        RETURNING key
        """,
        (key, request_hash, call_sid),
    ).fetchone()
    if claimed is not None:
        return None
    with conn.cursor(row_factory=class_row(IdempotencyKey)) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM idempotency_keys WHERE key = %s", (key,)
        ).fetchone()


def remember(conn, key: str, status: int, body: dict) -> None:
    """Keep the answer the key's request got, for its retries."""
    conn.execute(
        """
        UPDATE idempotency_keys SET response_status = %s, response_body = %s
         WHERE key = %s AND response_status IS NULL
        """,
        (status, Jsonb(body), key),
    )


def delete_expired(conn, hours: int, batch: int) -> int:
    """Delete keys older than ``hours`` in short transactions of ``batch``; return how many."""
    # Oldest first on idempotency_keys_created_at_idx (migration 008); a key a request
    # holds right now is skipped, not waited for, and goes at the next prune.
    statement = """
        DELETE FROM idempotency_keys
         WHERE key IN (SELECT key FROM idempotency_keys
                        WHERE created_at < now() - make_interval(hours => %(hours)s)
                        ORDER BY created_at
                        LIMIT %(batch)s
                          FOR UPDATE SKIP LOCKED)
    """
    return delete_in_batches(conn, statement, {"hours": hours, "batch": batch})
