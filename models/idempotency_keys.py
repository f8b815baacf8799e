"""Idempotency keys: which call a keyed call request created, and the answer it got."""

from dataclasses import dataclass, fields
from datetime import datetime

from psycopg.rows import class_row
from psycopg.types.json import Jsonb


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
