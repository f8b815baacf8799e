"""Name the sessions a migration statement waits for: pid, state, transaction age, query.

DDL under a short ``lock_timeout`` gives up quickly; then the sessions holding
locks on its tables for longer than that timeout are the ones in its way. A
``CONCURRENTLY`` build or drop waits, without a lock timeout, for older
transactions (a report, a backup); a watcher on a second connection asks
``pg_blocking_pids`` now and then and says who.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo

from errors import first_line

FIRST_REPORT_SECONDS = 5.0  # a build that finishes quickly says nothing
REPORT_EVERY_SECONDS = 30.0
MAX_SESSIONS_LISTED = 3

SESSION = r"""
pid, state, application_name,
coalesce(extract(epoch FROM now() - xact_start)::bigint, 0),
left(regexp_replace(coalesce(query, ''), '\s+', ' ', 'g'), 60)
"""
HOLDING_LOCKS = f"""
SELECT {SESSION},
       -- One PostgreSQL cancels for a lock waiter: not one run to prevent wraparound.
       backend_type = 'autovacuum worker' AND query NOT LIKE '%%(to prevent wraparound)%%'
  FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND xact_start < now() - %(waited)s::interval
  AND pid IN (SELECT pid FROM pg_locks WHERE granted AND relation IN (
      SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name))
ORDER BY xact_start, pid
"""
BLOCKING = f"""
SELECT {SESSION} FROM pg_stat_activity
WHERE pid = ANY(pg_blocking_pids(%s))
ORDER BY xact_start NULLS LAST, pid
"""
TABLE_NAMED = re.compile(
    r"\b(?:ALTER|DROP|LOCK|UPDATE|FROM|INTO|ON)\s+(?:TABLE\s+)?(?:IF EXISTS\s+)?(\w+)", re.I
)


def describe(rows: list[tuple]) -> str:
    """Return sessions as one fragment of a line: pid, state, transaction age, query."""
    parts = [
        f"pid {pid}{f' ({app})' if app else ''} {state}, transaction open {age}s: {query!r}"
        for pid, state, app, age, query in rows[:MAX_SESSIONS_LISTED]
    ]
    if len(rows) > MAX_SESSIONS_LISTED:
        parts.append(f"and {len(rows) - MAX_SESSIONS_LISTED} more")
    return "; ".join(parts) or "no session now (it has ended)"


def blocking_sessions(conn: psycopg.Connection, statement: str, waited: str) -> tuple[str, bool]:
    """Return the sessions that held locks on the statement's tables longer than ``waited``,
    and whether an autovacuum worker PostgreSQL would cancel for a lock waiter is among them."""
    tables = sorted({name.lower() for name in TABLE_NAMED.findall(statement)})
    try:
        rows = conn.execute(HOLDING_LOCKS, {"tables": tables, "waited": waited}).fetchall()
    except psycopg.Error as exc:  # naming them is a courtesy; the retry goes on without it
        return f"cannot tell ({first_line(exc)})", False
    return describe([row[:-1] for row in rows]), any(row[-1] for row in rows)


@contextmanager
def watching(conn: psycopg.Connection, what: str, say):
    """While the block runs, say every so often which sessions ``conn`` waits for."""
    pid, password = conn.info.backend_pid, conn.pgconn.password  # the dsn hides the password
    conninfo = make_conninfo(
        conn.info.dsn,
        application_name="migrations (watching)",
        **({"password": password.decode()} if password else {}),
    )
    stopped = threading.Event()

    def watch() -> None:  # connects only once there is something to say
        waited, interval = 0.0, FIRST_REPORT_SECONDS
        try:
            while not stopped.wait(interval):
                waited += interval
                interval = REPORT_EVERY_SECONDS
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as other:
                    rows = other.execute(BLOCKING, (pid,)).fetchall()
                if rows and not stopped.is_set():
                    say(
                        f"  {what}: waiting {waited:.0f}s for older transactions to end "
                        f"(writes go on meanwhile): {describe(rows)}"
                    )
        except psycopg.Error as exc:
            say(f"  {what}: cannot see what it waits for: {first_line(exc)}")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()
