"""Reading EXPLAIN plans: which scans a query would use, naturally and with seq scans priced out."""

import psycopg
from psycopg import sql


def _walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def scans(conn, query: sql.Composable) -> list[str]:
    """Return the plan's scan nodes, e.g. ``Index Scan using calls_call_sid_key on calls``."""
    (plan,) = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query)).fetchone()
    found = []
    for node in _walk(plan[0]["Plan"]):
        if "Scan" not in node["Node Type"]:
            continue
        using = f" using {node['Index Name']}" if "Index Name" in node else ""
        on = f" on {node['Relation Name']}" if "Relation Name" in node else ""
        found.append(f"{node['Node Type']}{using}{on}")
    return found


def scans_without_seqscan(conn, query: sql.Composable) -> list[str]:
    """Return the plan's scans with ``enable_seqscan`` off: whether an index can serve it at all.

    On a small table the planner rightly prefers a seq scan, which says nothing
    about the index; pricing seq scans out shows whether the index is usable.
    The setting lives in a savepoint that is rolled back, so nothing else sees it.
    """
    found: list[str] = []
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        found = scans(conn, query)
        raise psycopg.Rollback  # ends the savepoint, and the setting with it
    return found


def execution_ms(conn, query: sql.Composable) -> float:
    """Return how long the query took to run, in milliseconds (EXPLAIN ANALYZE; reads only)."""
    (plan,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(query)).fetchone()
    return float(plan[0]["Execution Time"])


def uses_index(found: list[str], index: str | None = None) -> bool:
    """Return whether any scan uses an index (``index``, when named)."""
    if index:
        return any(f" using {index} " in f + " " for f in found)
    return any(" using " in f for f in found)
