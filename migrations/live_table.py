"""The statements a migration script runs on a live table, through the ``Db`` handle.

- ``db.execute(sql)``: one short transaction under a short ``lock_timeout``,
  retried with jittered backoff, naming the sessions in the way;
- ``db.create_index`` / ``db.drop_index``: ``CONCURRENTLY``, an invalid leftover
  of a failed build dropped first, what the build waits for named;
- ``db.backfill``: an UPDATE in primary-key ranges, a commit per batch, progress.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from textwrap import dedent
from types import ModuleType

import psycopg
from psycopg import sql

from errors import first_line
from migrations.waits import WaitWatch, blocking_sessions

# While DDL waits for its lock, every request on the table queues behind it:
# 100 ms keeps the slowest request of the live service under 250 ms. Attempts
# back off (doubling, with jitter so they do not fall into step with a periodic
# job) for about two minutes in all before giving up.
LOCK_TIMEOUT = "100ms"
MAX_LOCK_ATTEMPTS = 20
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
BATCH_TIMEOUT = "60s"


class MigrationError(Exception):
    """A migration cannot proceed; the message is the one line the operator sees."""


class Refused(MigrationError):
    """A script refused before changing anything (its own check failed)."""


@dataclass
class Run:
    """What one command is doing, for the operator's output and for benchmarks."""

    lock_retries: int = 0
    out: Callable[[str], None] | None = None
    current: ModuleType | None = None  # the migration being moved, for an interrupted run
    moved: int = 0  # migrations finished by this command
    done: list[str] = field(default_factory=list)  # their labels, for a line after a failure
    output_closed: bool = False  # stdout went away (`| head`): the run goes on silently

    def say(self, line: str) -> None:
        """Print one progress line at once; once stdout is closed, drop it and go on."""
        if self.out is not None:
            self.out(line)
        elif not self.output_closed:
            try:
                print(line, flush=True)
            except BrokenPipeError:
                self.output_closed = True
                # Later writes, and the flush at exit, go nowhere instead of failing.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def statement_text(statement: str) -> str:
    """Return a statement as written in a script, without its indentation."""
    return dedent(statement).strip().rstrip(";")


@dataclass
class Db:
    """The migration's autocommit connection, with the few ways a script changes a live table."""

    conn: psycopg.Connection
    run: Run
    losses: list[str] = field(default_factory=list)  # what a downgrade will drop
    progress_every_seconds: float = 2.0

    def say(self, line: str) -> None:
        """Print one progress line."""
        self.run.say(line)

    def value(self, query: str, params=None):
        """Return the first column of the first row of a read-only query (None when no row)."""
        row = self.conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def report(self, title: str, query: str) -> None:
        """Print the rows of a read-only query under a title, one line each."""
        self.say(f"  {title}:")
        for row in self.conn.execute(query).fetchall():
            self.say("    " + "  ".join("" if v is None else str(v) for v in row))

    def refuse(self, reason: str) -> None:
        """Stop before changing anything, with the reason as the error line."""
        raise Refused(reason)

    def will_drop(self, what: str, export: str, file: str) -> None:
        """Note data a downgrade drops, said before anything changes, with the command exporting it.

        The export goes to /var/tmp (kept across reboots), never the current directory.
        """
        copy = f"\\copy ({' '.join(export.split())}) TO '/var/tmp/{file}.csv' CSV HEADER"
        self.losses.append(f'{what}; to keep it, export it first: psql "$DATABASE_URL" -c "{copy}"')

    def execute(self, statement: str, *, unless: str | None = None, timeout: str = "60s") -> None:
        """Run DDL in one short transaction under ``lock_timeout``, retried while locked out.

        ``unless`` is a query returning a row when the statement's effect is
        already there (for statements PostgreSQL has no IF [NOT] EXISTS for).
        """
        if unless and self.conn.execute(unless).fetchone():
            return

        def attempt():
            with self.conn.transaction():
                self.set_local(LOCK_TIMEOUT, timeout)
                return self.conn.execute(statement_text(statement))

        self.with_lock_retries(attempt, statement)

    def batch(self, statement: str, params) -> int:
        """Run one data-moving statement in its own short transaction; return the rows changed."""

        def attempt():
            with self.conn.transaction():
                self.set_local(LOCK_TIMEOUT, BATCH_TIMEOUT)
                return self.conn.execute(statement_text(statement), params).rowcount

        return self.with_lock_retries(attempt, statement)

    def set_local(self, lock_timeout: str, statement_timeout: str) -> None:
        """Set this transaction's lock and statement timeouts."""
        for name, value in (
            ("lock_timeout", lock_timeout),
            ("statement_timeout", statement_timeout),
        ):
            self.conn.execute(
                sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value))
            )

    def with_lock_retries(self, attempt, statement: str):
        """Call ``attempt`` until it gets its locks; back off with jitter between lock timeouts."""
        what = first_line_of(statement)
        delay = FIRST_BACKOFF_SECONDS
        for number in range(1, MAX_LOCK_ATTEMPTS + 1):
            try:
                return attempt()
            except psycopg.errors.LockNotAvailable:
                holders = blocking_sessions(self.conn, statement, LOCK_TIMEOUT)
                if number == MAX_LOCK_ATTEMPTS:
                    raise MigrationError(
                        f"could not get a lock for {what!r} after {number} attempts of "
                        f"{LOCK_TIMEOUT}; in the way: {holders}; end that session "
                        "(or wait for it) and run again"
                    ) from None
                self.run.lock_retries += 1
                pause = delay * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not secrets)
                self.say(
                    f"  lock timeout ({LOCK_TIMEOUT}) on {what!r}, attempt {number}/"
                    f"{MAX_LOCK_ATTEMPTS}; in the way: {holders}; retrying in {pause:.1f}s"
                )
                time.sleep(pause)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def index_validity(self, name: str) -> bool | None:
        """Return None when the index does not exist, else whether it is valid."""
        return self.value(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
        )

    def create_index(self, name: str, create: str, *, timeout: str = "2h") -> None:
        """Build an index CONCURRENTLY; drop an invalid leftover first, and after a failed build.

        No short lock timeout: the build's waits (older transactions, SHARE UPDATE
        EXCLUSIVE) queue no reads or writes, and a retry would throw away a finished
        scan. ``timeout`` bounds it; the sessions it waits for are named meanwhile.
        """
        if self.index_validity(name):
            self.say(f"  index {name} exists and is valid")
            return
        with self.concurrently(f"index {name}", timeout):
            if self.index_validity(name) is False:
                self.say(f"  index {name} is invalid (an earlier build failed); dropping it")
                self.drop_index_now(name)
            self.say(f"  building index {name} concurrently (statement_timeout {timeout})")
            try:
                self.conn.execute(statement_text(create))
            except BaseException as exc:  # Ctrl-C too: an invalid UNIQUE index rejects writes
                self.drop_failed_build(name, exc)
                raise

    def drop_index(self, name: str, *, timeout: str = "1h") -> None:
        """Drop an index, if it exists, CONCURRENTLY (no write waits for it)."""
        if self.index_validity(name) is not None:
            with self.concurrently(f"dropping index {name}", timeout):
                self.drop_index_now(name)

    def drop_index_now(self, name: str) -> None:
        """Run DROP INDEX CONCURRENTLY IF EXISTS (outside a transaction)."""
        self.conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
        )

    def concurrently(self, what: str, timeout: str):
        """Return the session settings and watcher a CONCURRENTLY statement runs under."""
        return Concurrently(self, what, timeout)

    def drop_failed_build(self, name: str, exc: BaseException) -> None:
        """Drop the invalid index a failed build leaves, or say the one statement that does."""
        if self.conn.broken or self.index_validity(name) is None:
            return
        self.say(f"  building index {name} failed ({first_line(exc)}); dropping what it left")
        try:
            if isinstance(exc, KeyboardInterrupt):  # the operator wants out: a few seconds only
                self.conn.execute("SET statement_timeout = '3s'")
            self.drop_index_now(name)
        except (psycopg.Error, KeyboardInterrupt) as drop_exc:
            self.say(
                f"  the invalid index stays ({first_line(drop_exc)}); drop it with "
                f"DROP INDEX CONCURRENTLY IF EXISTS {name}, or run the migration again"
            )

    def backfill(self, table: str, update: str, what: str, batch_size: int = 10_000) -> None:
        """Run ``update`` over ``table`` in primary-key ranges, one commit per batch.

        ``update`` bounds ``id`` with ``%(after)s`` and ``%(upto)s`` and skips rows
        already done, so a re-run does only what is left; memory stays flat.
        """
        low, high = self.conn.execute(
            sql.SQL("SELECT min(id), max(id) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        if low is None:
            self.say(f"  {table} is empty; 0 {what}")
            return
        self.say(f"  {table}: ids {low:,}..{high:,}; batches of {batch_size:,}")
        done, after, started, last_report = 0, low - 1, time.monotonic(), time.monotonic()
        while after < high:
            upto = min(after + batch_size, high)
            changed = self.batch(update, {"after": after, "upto": upto})
            done += changed
            # After a batch that changed nothing (a gap in ids), jump to the next id.
            after = upto if changed else self.next_id_before(table, upto, high)
            now = time.monotonic()
            if now - last_report >= self.progress_every_seconds or after >= high:
                last_report = now
                rate = done / max(now - started, 1e-9)
                share = (after - low + 1) / (high - low + 1)
                self.say(
                    f"  {done:,} {what}; ids up to {after:,} of {high:,} ({share:.0%});"
                    f" {rate:,.0f} rows/s"
                )
        self.say(f"  total: {done:,} {what} in {time.monotonic() - started:.2f}s")

    def next_id_before(self, table: str, upto: int, high: int) -> int:
        """Return just before the next id above ``upto`` (``high`` when there is none)."""
        following = self.value(
            sql.SQL("SELECT min(id) FROM {} WHERE id > %s").format(sql.Identifier(table)), (upto,)
        )
        return high if following is None else min(following - 1, high)


class Concurrently:
    """Session settings for a CONCURRENTLY statement (no lock timeout, a long statement
    timeout), reset after, with a watcher naming what it waits for."""

    def __init__(self, db: Db, what: str, timeout: str):
        self.db, self.watch = db, WaitWatch(db.conn, db.say, what)
        self.timeout = timeout

    def __enter__(self):
        self.db.conn.execute("SET lock_timeout = 0")
        self.db.conn.execute(
            sql.SQL("SET statement_timeout = {}").format(sql.Literal(self.timeout))
        )
        self.watch.__enter__()

    def __exit__(self, *exc) -> None:
        self.watch.__exit__()
        if not self.db.conn.broken:
            self.db.conn.execute("RESET lock_timeout")
            self.db.conn.execute("RESET statement_timeout")


def first_line_of(statement: str) -> str:
    """Return the first SQL line of a statement, to name it in messages."""
    lines = [line.strip() for line in statement_text(statement).splitlines()]
    return next((line for line in lines if line and not line.startswith("--")), "")[:80]
