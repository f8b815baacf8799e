"""The suppression list: numbers that are never dialled, by the API or by a batch."""

from psycopg.rows import dict_row

from errors import ApiError


def suppress(conn, phone_number: str, reason: str | None) -> tuple[dict, bool]:
    """Add the number (or update its reason); return it and whether it is new.

    Its waiting batch entries become ``suppressed`` in the same transaction: no worker dials them.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            INSERT INTO suppressions (phone_number, reason) VALUES (%s, %s)
            ON CONFLICT (phone_number) DO UPDATE SET reason = EXCLUDED.reason
            RETURNING phone_number, reason, created_at, (xmax = 0) AS created
            """,
            (phone_number, reason),
        ).fetchone()
        cur.execute(
            """
            UPDATE call_batch_entries SET state = 'suppressed', updated_at = now()
             WHERE phone_number = %s AND state IN ('queued', 'waiting_window', 'redial_scheduled')
            """,
            (phone_number,),
        )
    created = row.pop("created")
    return row, created


def lift(conn, phone_number: str) -> bool:
    """Remove the number from the list; return whether it was there."""
    deleted = conn.execute("DELETE FROM suppressions WHERE phone_number = %s", (phone_number,))
    return deleted.rowcount > 0


def listed(conn) -> list[dict]:
    """Return every suppressed number, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT phone_number, reason, created_at FROM suppressions ORDER BY created_at DESC"
        ).fetchall()


def refusal(phone_number: str) -> ApiError:
    """Return the 409 ``suppressed`` for a call to a number on the list: never dialled."""
    return ApiError(
        "This number is on the suppression list; it is never dialled.",
        status=409,
        code="suppressed",
        details={"phone_number": phone_number},
    )
