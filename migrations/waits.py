"""Say which sessions a long-running migration statement is waiting for.

An index built or dropped ``CONCURRENTLY`` waits, with no lock timeout, for
every transaction older than some phase of it to end: a report, a forgotten
``idle in transaction`` session, a ``pg_dump`` backup. The waits block nobody,
but from the outside the run looks stuck; this names the sessions it waits for
(pid, state, how long their transaction has been open, what they ran), first
after a few seconds and then now and then, from a second connection.
"""

from __future__ import annotations

import threading

import psycopg
from psycopg.conninfo import make_conninfo

# A build that finishes quickly says nothing; one that waits says so soon, then
# every half minute (a build may wait out a backup for an hour).
FIRST_REPORT_SECONDS = 5.0
REPORT_EVERY_SECONDS = 30.0
MAX_SESSIONS_LISTED = 5

BLOCKING_SESSIONS = r"""
SELECT b.pid, b.state, b.application_name,
       coalesce(extract(epoch FROM now() - b.xact_start)::bigint, 0),
       left(regexp_replace(coalesce(b.query, ''), '\s+', ' ', 'g'), 60),
       w.wait_event
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking (pid)
JOIN pg_stat_activity AS b ON b.pid = blocking.pid
WHERE w.pid = %s
ORDER BY b.xact_start NULLS LAST, b.pid
"""

WHAT_IT_WAITS_FOR = {
    "virtualxid": "older transactions to end",
    "transactionid": "older transactions to end",
    "relation": "a lock on the table",
}


def describe(rows: list[tuple]) -> str:
    """Return the blocking sessions as one readable fragment of a line."""
    parts = []
    for pid, state, application, seconds, query, _ in rows[:MAX_SESSIONS_LISTED]:
        who = f"pid {pid} ({application})" if application else f"pid {pid}"
        parts.append(f"{who} {state}, transaction open {seconds}s: {query!r}")
    if len(rows) > MAX_SESSIONS_LISTED:
        parts.append(f"and {len(rows) - MAX_SESSIONS_LISTED} more")
    return "; ".join(parts)


def second_conninfo(conn: psycopg.Connection) -> str:
    """Return how to open another connection like ``conn`` (its dsn hides the password)."""
    password = conn.pgconn.password
    extra = {"password": password.decode()} if password else {}
    return make_conninfo(conn.info.dsn, application_name="migrations (watching)", **extra)


class WaitWatch:
    """While the block runs, report every so often which sessions ``conn`` waits for."""

    def __init__(self, conn: psycopg.Connection, say, what: str):
        self.pid = conn.info.backend_pid
        self.conninfo = second_conninfo(conn)
        self.say = say
        self.what = what
        self.last = ""  # the sessions seen last, for the failure message
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self) -> WaitWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def watch(self) -> None:
        """Poll the blocking sessions until stopped; connect only once there is something to say."""
        waited, interval = 0.0, FIRST_REPORT_SECONDS
        try:
            while not self.stopped.wait(interval):
                waited += interval
                interval = REPORT_EVERY_SECONDS
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as other:
                    rows = other.execute(BLOCKING_SESSIONS, (self.pid,)).fetchall()
                if rows and not self.stopped.is_set():
                    self.last = describe(rows)
                    waits_for = WHAT_IT_WAITS_FOR.get(rows[0][5], "other sessions")
                    self.say(
                        f"  {self.what}: waiting {waited:.0f}s for {waits_for} "
                        f"(writes go on meanwhile): {self.last}"
                    )
        except psycopg.Error as exc:  # watching is a courtesy; the statement goes on without it
            self.say(f"  {self.what}: cannot see what it waits for: {str(exc).strip()[:100]}")
