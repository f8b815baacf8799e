"""Prove the unique constraint on calls.call_sid rejects a duplicate, writing nothing.

The probe inserts a row carrying an existing call_sid inside a transaction that
is always rolled back. It gives explicit (negative) ids, so the ``calls_id_seq``
sequence is never advanced (nextval is not transactional), and it touches no
live row, so it takes no row lock the service could wait on.
"""

import psycopg

from errors import first_line
from ops.catalog import column
from ops.report import failed, passed

PROBE_IDS = (-(2**63) + 1, -(2**63) + 2)
PROBE_SID = "verify_probe_call_sid"


def _insert(conn, probe_id: int, call_sid: str) -> None:
    # conversation_id is given because before 004 it is NOT NULL.
    conn.execute(
        "INSERT INTO calls (id, call_sid, conversation_id) VALUES (%s, %s, %s)",
        (probe_id, call_sid, f"verify_probe_{-probe_id}"),
    )


def _try_duplicate(conn) -> tuple[str, str]:
    """Insert a duplicate call_sid in a rolled-back transaction; return (outcome, detail)."""
    outcome = ("accepted", "")
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '2s'")
        conn.execute("SET LOCAL statement_timeout = '10s'")
        existing = conn.execute("SELECT call_sid FROM calls ORDER BY id LIMIT 1").fetchone()
        if existing is None:
            # An empty table: the probe brings both rows of the pair itself.
            _insert(conn, PROBE_IDS[0], PROBE_SID)
        call_sid = existing[0] if existing else PROBE_SID
        try:
            with conn.transaction():
                _insert(conn, PROBE_IDS[1], call_sid)
        except psycopg.errors.UniqueViolation as exc:
            outcome = ("rejected", exc.diag.constraint_name or "")
        except psycopg.Error as exc:  # any other refusal says nothing about uniqueness
            outcome = ("error", first_line(exc))
        raise psycopg.Rollback  # whatever happened, nothing of it stays
    return outcome


def unique_rejects_duplicate(conn, opts):
    """Check a second row with an existing call_sid is refused by calls_call_sid_key."""
    name = "unique_rejects_duplicate"
    if column(conn, "calls", "call_sid") is None:
        return failed(name, "calls.call_sid does not exist (migration 001 not applied)")
    outcome, detail = _try_duplicate(conn)
    if outcome == "rejected":
        return passed(
            name,
            f"a duplicate call_sid was rejected by {detail} (probe rolled back)",
            constraint=detail,
        )
    if outcome == "error":
        return failed(name, f"the probe insert failed for another reason: {detail}")
    return failed(
        name, "a duplicate call_sid was ACCEPTED (probe rolled back): no unique constraint"
    )
