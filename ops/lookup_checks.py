"""Checks of the two-step lookup: call_sid → call → conversation_id → transcription lines.

The checklist asks that backfilled records work, that the index is used
(EXPLAIN) and that the lookup performs well.
"""

from psycopg import sql

from ops import plans
from ops.catalog import column, estimated_rows
from ops.report import failed, passed, warned

# Above this many rows a seq scan on a lookup is a real cost, not a planner's shortcut.
LARGE_TABLE_ROWS = 10_000
SAMPLE_SIZE = 5

BACKFILLED = "call_sid = 'legacy_' || id"


def _lookup(call_sid: str) -> sql.Composable:
    # The query the webhook runs for its first step.
    return sql.SQL("SELECT id, conversation_id FROM calls WHERE call_sid = {}").format(
        sql.Literal(call_sid)
    )


def _transcript(conversation_id: str) -> sql.Composable:
    # The second step: the lines of that conversation, in time order.
    return sql.SQL(
        'SELECT speaker, message, "timestamp" FROM transcriptions '
        'WHERE conversation_id = {} ORDER BY "timestamp"'
    ).format(sql.Literal(conversation_id))


def backfill(conn, opts):
    """Count backfilled calls and resolve a sample of them through the two-step lookup."""
    name = "backfill"
    if column(conn, "calls", "call_sid") is None:
        return failed(name, "calls.call_sid does not exist (migration 001 not applied)")
    count, null_driver = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE driver_id IS NULL) FROM calls WHERE {BACKFILLED}"
    ).fetchone()
    figures = {"backfilled": count, "backfilled_null_driver_id": null_driver}
    if not count:
        return passed(
            name, "0 backfilled calls (no call predates 002); nothing to resolve", **figures
        )
    # Both ends of the id range, and a NULL driver_id row, which the checklist names.
    sample = conn.execute(
        f"""
        (SELECT id, call_sid, conversation_id FROM calls
          WHERE {BACKFILLED} ORDER BY id LIMIT 2)
        UNION
        (SELECT id, call_sid, conversation_id FROM calls
          WHERE {BACKFILLED} ORDER BY id DESC LIMIT 2)
        UNION
        (SELECT id, call_sid, conversation_id FROM calls
          WHERE {BACKFILLED} AND driver_id IS NULL ORDER BY id LIMIT 1)
        """
    ).fetchall()[:SAMPLE_SIZE]
    broken, lines = [], 0
    for call_id, call_sid, conversation_id in sample:
        found = conn.execute(_lookup(call_sid)).fetchone()
        if found is None or found[0] != call_id or found[1] != conversation_id or not found[1]:
            broken.append(call_sid)
            continue
        lines += len(conn.execute(_transcript(found[1])).fetchall())
    figures.update(sampled=len(sample), resolved=len(sample) - len(broken), sample_lines=lines)
    if broken:
        return failed(
            name,
            f"{count} backfilled; {len(broken)} of {len(sample)} sampled do not resolve "
            f"to a conversation: {', '.join(broken)}",
            **figures,
        )
    return passed(
        name,
        f"{count} backfilled ({null_driver} with NULL driver_id); {len(sample)} of {len(sample)} "
        f"sampled resolve call_sid -> call -> conversation_id ({lines} transcript lines)",
        **figures,
    )


def _sample_call(conn) -> tuple[str, str]:
    """Return a real (call_sid, conversation_id) to EXPLAIN with, or made-up ones."""
    sid = "call_sid" if column(conn, "calls", "call_sid") else "NULL::text"
    row = conn.execute(
        f"SELECT {sid}, conversation_id FROM calls WHERE conversation_id IS NOT NULL "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return (
        (row and row[0]) or "cs_verify_no_such_call",
        (row and row[1]) or "verify_no_such_conversation",
    )


def call_sid_index_used(conn, opts):
    """EXPLAIN the call_sid lookup: it must be able to use calls_call_sid_key, and be quick."""
    name = "call_sid_index_used"
    if column(conn, "calls", "call_sid") is None:
        return failed(name, "calls.call_sid does not exist (migration 001 not applied)")
    query = _lookup(_sample_call(conn)[0])
    natural = plans.scans(conn, query)
    rows = estimated_rows(conn, "calls")
    ms = plans.execution_ms(conn, query)
    figures = {"plan": natural, "estimated_rows": rows, "execution_ms": ms}
    if plans.uses_index(natural, "calls_call_sid_key"):
        return passed(name, f"{'; '.join(natural)} ({ms:.2f} ms on ~{rows} rows)", **figures)
    forced = plans.scans_without_seqscan(conn, query)
    figures["plan_without_seqscan"] = forced
    if not plans.uses_index(forced, "calls_call_sid_key"):
        return failed(
            name, f"no index serves the lookup: {'; '.join(forced)} (003 not applied?)", **figures
        )
    if rows >= LARGE_TABLE_ROWS:
        return warned(
            name,
            f"planner chose {'; '.join(natural)} on ~{rows} rows; run ANALYZE calls",
            **figures,
        )
    return passed(
        name,
        f"{'; '.join(forced)} when seq scans are priced out (the planner picks "
        f"{'; '.join(natural)} on only ~{rows} rows); {ms:.2f} ms",
        **figures,
    )


def transcript_lookup_plan(conn, opts):
    """EXPLAIN the second step: an index must serve transcriptions by conversation_id."""
    name = "transcript_lookup_plan"
    query = _transcript(_sample_call(conn)[1])
    natural = plans.scans(conn, query)
    rows = estimated_rows(conn, "transcriptions")
    figures = {"plan": natural, "estimated_rows": rows}
    if plans.uses_index(natural):
        return passed(name, f"{'; '.join(natural)} (~{rows} rows)", **figures)
    forced = plans.scans_without_seqscan(conn, query)
    figures["plan_without_seqscan"] = forced
    if plans.uses_index(forced):
        if rows >= LARGE_TABLE_ROWS:
            return warned(
                name, f"planner chose {'; '.join(natural)} on ~{rows} rows; run ANALYZE", **figures
            )
        return passed(
            name,
            f"{'; '.join(forced)} when seq scans are priced out (~{rows} rows)",
            **figures,
        )
    return warned(
        name,
        f"no index on transcriptions(conversation_id): every lookup is {'; '.join(forced)} "
        f"over ~{rows} rows",
        **figures,
    )
