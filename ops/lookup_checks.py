"""Checks of the two-step lookup (call_sid → call → conversation_id → transcription lines):
backfilled records resolve, an index serves each step (EXPLAIN), and quickly."""

import psycopg
from psycopg import sql

from ops.catalog import needs
from ops.report import failed, passed, warned

# Above this many rows a seq scan on a lookup is a real cost, not a planner's shortcut.
LARGE_TABLE_ROWS = 10_000
BACKFILLED = "call_sid = 'legacy_' || id"


# The webhook's two steps, with literal values so that EXPLAIN can plan them.
LOOKUP = sql.SQL("SELECT id, conversation_id FROM calls WHERE call_sid = {}")
TRANSCRIPT = sql.SQL(
    'SELECT speaker, message, "timestamp" FROM transcriptions '
    'WHERE conversation_id = {} ORDER BY "timestamp"'
)


@needs("001", "call_sid")
def backfill(conn, opts):
    """Count backfilled calls and resolve a sample of them through the two-step lookup."""
    count, null_driver = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE driver_id IS NULL) FROM calls WHERE {BACKFILLED}"
    ).fetchone()
    figures = {"backfilled": count, "backfilled_null_driver_id": null_driver}
    if not count:
        return passed("0 backfilled calls (no call predates 002); nothing to resolve", **figures)
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
    ).fetchall()
    broken, lines = [], 0
    for call_id, call_sid, conversation_id in sample:
        found = conn.execute(LOOKUP.format(sql.Literal(call_sid))).fetchone()
        if found is None or found[0] != call_id or found[1] != conversation_id or not found[1]:
            broken.append(call_sid)
            continue
        lines += len(conn.execute(TRANSCRIPT.format(sql.Literal(found[1]))).fetchall())
    figures.update(sampled=len(sample), resolved=len(sample) - len(broken), sample_lines=lines)
    if broken:
        return failed(
            f"{count} backfilled; {len(broken)} of {len(sample)} sampled do not resolve "
            f"to a conversation: {', '.join(broken)}",
            **figures,
        )
    return passed(
        f"{count} backfilled ({null_driver} with NULL driver_id); {len(sample)} of {len(sample)} "
        f"sampled resolve call_sid -> call -> conversation_id ({lines} transcript lines)",
        **figures,
    )


def _newest(conn, name: str, otherwise: str) -> sql.Literal:
    """Return the newest call's value of this column to EXPLAIN with, else a made-up one."""
    query = sql.SQL("SELECT {0} FROM calls WHERE {0} IS NOT NULL ORDER BY id DESC LIMIT 1")
    row = conn.execute(query.format(sql.Identifier(name))).fetchone()
    return sql.Literal(row[0] if row else otherwise)


def _scans(conn, query: sql.Composable, seqscan: bool = True) -> list[str]:
    """Return the plan's scans, e.g. ``Index Scan using calls_call_sid_key on calls``.

    On a small table the planner rightly prefers a seq scan, which says nothing about the
    index: ``seqscan=False`` prices seq scans out, in a savepoint rolled back with the setting.
    """
    with conn.transaction():
        if not seqscan:
            conn.execute("SET LOCAL enable_seqscan = off")
        (plan,) = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query)).fetchone()
        raise psycopg.Rollback
    found, nodes = [], [plan[0]["Plan"]]
    while nodes:  # depth first, in plan order
        node = nodes.pop(0)
        nodes[:0] = node.get("Plans", [])
        if "Scan" in node["Node Type"]:
            using = f" using {node['Index Name']}" if "Index Name" in node else ""
            on = f" on {node['Relation Name']}" if "Relation Name" in node else ""
            found.append(f"{node['Node Type']}{using}{on}")
    return found


def _index_verdict(
    conn, query, table: str, index: str, *, no_index: tuple, ms: str = "", **figures
):
    """Judge whether an index (``index``, or any) serves the query; ``no_index`` when none can.

    Only once seq scans are priced out: PASS on a small table, WARN on a large one.
    """
    using = f" using {index} " if index else " using "  # the name whole, not a prefix

    def served(scans: list[str]) -> bool:
        return any(using in f"{scan} " for scan in scans)

    natural = _scans(conn, query)  # first: it fails, and says why, when the table is missing
    rows = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (table,)
    ).fetchone()[0]
    # -1 until the table is first analysed: its size is unknown, not 0 (it may be huge).
    size = f"~{rows} rows" if rows >= 0 else "an unknown number of rows (not analysed)"
    figures.update(plan=natural, estimated_rows=rows if rows >= 0 else None)
    if served(natural):
        return passed(f"{'; '.join(natural)} ({ms}{size})", **figures)
    forced = figures["plan_without_seqscan"] = _scans(conn, query, seqscan=False)
    if not served(forced):
        verdict, message = no_index
        return verdict(message.format(plan="; ".join(forced), size=size), **figures)
    if rows >= LARGE_TABLE_ROWS:
        return warned(
            f"planner chose {'; '.join(natural)} on ~{rows} rows; run ANALYZE {table}", **figures
        )
    return passed(
        f"{'; '.join(forced)} when seq scans are priced out (the planner picks "
        f"{'; '.join(natural)} on {'only ' if rows >= 0 else ''}{size})",
        **figures,
    )


@needs("001", "call_sid")
def call_sid_index_used(conn, opts):
    """EXPLAIN the call_sid lookup: calls_call_sid_key must be able to serve it, and quickly."""
    query = LOOKUP.format(_newest(conn, "call_sid", "cs_verify_no_such_call"))
    (plan,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(query)).fetchone()
    ms = float(plan[0]["Execution Time"])  # EXPLAIN ANALYZE runs it: a read
    return _index_verdict(
        conn,
        query,
        "calls",
        "calls_call_sid_key",
        no_index=(failed, "no index serves the lookup: {plan} (003 not applied?)"),
        ms=f"{ms:.2f} ms on ",
        execution_ms=ms,
    )


def transcript_lookup_plan(conn, opts):
    """EXPLAIN the second step: an index must serve transcriptions by conversation_id."""
    return _index_verdict(
        conn,
        TRANSCRIPT.format(_newest(conn, "conversation_id", "verify_no_such_conversation")),
        "transcriptions",
        "",
        no_index=(
            warned,
            "no index on transcriptions(conversation_id): every lookup is {plan} over {size}",
        ),
    )
