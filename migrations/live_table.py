"""The ``Db`` handle: the few ways a migration script changes a live table.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from textwrap import dedent
from types import ModuleType

import psycopg
from psycopg import sql

from errors import first_line
from migrations.waits import blocking_sessions, watching

# While DDL waits for its lock, every request on the table queues behind it:
# 100 ms keeps the slowest request of the live service under 250 ms. Attempts
# back off (doubling, with jitter so they do not fall into step with a periodic
# job) for about two minutes in all before giving up.
LOCK_TIMEOUT = "100ms"
# But an autovacuum (minutes to hours on a large table; 002 leaves every row of calls dead)
# yields to a lock waiter only when the waiter's deadlock check runs, after
# deadlock_timeout (1 s by default): a 100 ms wait never gets it cancelled. So
# the attempt after one that met an autovacuum waits this much past it, once.
PAST_DEADLOCK_TIMEOUT = """
SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000 + 500)::bigint
    || 'ms', current_setting('deadlock_timeout')
"""
MAX_LOCK_ATTEMPTS = 20
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
BATCH_TIMEOUT = "60s"  # one batch of a backfill; a slower one means something blocks it
SET_TIMEOUTS = sql.SQL("SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}")


class MigrationError(Exception):
    """A migration cannot proceed; the message is the one line the operator sees."""


class Refused(MigrationError):
    """A script refused before changing anything (its own check failed)."""


@dataclass
class Run:
    """What one command is doing: its output, and what to say after a failure."""

    out: Callable[[str], None] | None = None
    current: ModuleType | None = None  # the migration being moved, for an interrupted run
    done: list[str] = field(default_factory=list)  # labels of the migrations moved
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


def sql_text(statement: str) -> str:
    """Return a statement as written in a script, without its indentation."""
    return dedent(statement).strip().rstrip(";")


def drop_concurrently(name: str) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))


@dataclass
class Db:
    """The migration's autocommit connection, with the few ways a script changes a live table."""

    conn: psycopg.Connection
    run: Run
    losses: list[tuple[str, bool]] = field(default_factory=list)  # what a downgrade drops; asked?
    progress_every_seconds: float = 2.0

    def say(self, line: str) -> None:
        self.run.say(line)

    def value(self, query, params=None):
        """Return the first column of the first row of a read (None when no row)."""
        row = self.conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def rows_in(self, table: str) -> int:
        """Return how many rows ``table`` holds (0 when it does not exist)."""
        if not self.value("SELECT to_regclass(%s)", (table,)):
            return 0
        return self.value(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))

    def report(self, title: str, query: str) -> None:
        self.say(f"  {title}:")
        for row in self.conn.execute(query):
            self.say("    " + "  ".join("" if v is None else str(v) for v in row))

    def refuse(self, reason: str) -> None:
        raise Refused(reason)

    def will_drop(self, what: str, export: str, file: str, *, ask: bool = True) -> None:
        """Note data a downgrade drops, to say before anything changes, and its export.

        ``ask``: the rollback then goes on only with ``--yes``.
        """
        copy = f"\\copy ({' '.join(export.split())}) TO '/var/tmp/{file}.csv' CSV HEADER"
        line = f'{what}; to keep it, export it first: psql "$DATABASE_URL" -c "{copy}"'
        self.losses.append((line, ask))

    def execute(self, statement: str, params=None, *, unless=None, timeout="60s") -> int:
        """Run one short transaction under ``lock_timeout``, retried with backoff; return rowcount.

        ``unless``: a query returning a row when the effect is already there (for
        statements PostgreSQL has no IF [NOT] EXISTS for).
        """
        if unless and self.conn.execute(unless).fetchone():
            return 0
        text = sql_text(statement)
        lines = (line.strip() for line in text.splitlines())
        what = next((line for line in lines if line and not line.startswith("--")), "")[:80]
        delay, lock_timeout, lengthened = FIRST_BACKOFF_SECONDS, LOCK_TIMEOUT, None
        for attempt in range(1, MAX_LOCK_ATTEMPTS + 1):
            try:
                with self.conn.transaction():
                    self.conn.execute(SET_TIMEOUTS.format(lock_timeout, timeout))
                    return self.conn.execute(text, params).rowcount
            except psycopg.errors.LockNotAvailable:
                waited = lock_timeout
                in_the_way, autovacuum = blocking_sessions(self.conn, text, waited)
                # Once per statement: an autovacuum still there after it was not cancelled.
                lock_timeout, longer = self.next_lock_timeout(autovacuum and not lengthened)
                lengthened = lengthened or (lock_timeout if longer else None)
                if attempt == MAX_LOCK_ATTEMPTS:
                    one_longer = f" (one of {lengthened})" if lengthened else ""
                    raise MigrationError(
                        f"could not get a lock for {what!r} after {attempt} attempts of "
                        f"{LOCK_TIMEOUT}{one_longer}; in the way: {in_the_way}; end that "
                        "session (or wait for it) and run again"
                    ) from None
                # Capped after the jitter too: 20 attempts stay about two minutes in all.
                jitter = random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not secrets)
                pause = min(delay * jitter, MAX_BACKOFF_SECONDS)
                self.say(
                    f"  lock timeout ({waited}) on {what!r}, attempt {attempt}/"
                    f"{MAX_LOCK_ATTEMPTS}; in the way: {in_the_way}{longer}; "
                    f"retrying in {pause:.1f}s"
                )
                time.sleep(pause)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def next_lock_timeout(self, autovacuum: bool) -> tuple[str, str]:
        """Return the next attempt's ``lock_timeout`` and what to say of it: longer, once,
        when an autovacuum is in the way (see PAST_DEADLOCK_TIMEOUT)."""
        if not autovacuum:
            return LOCK_TIMEOUT, ""
        timeout, deadlock_timeout = self.conn.execute(PAST_DEADLOCK_TIMEOUT).fetchone()
        return timeout, (
            f"; an autovacuum: the next attempt waits {timeout}, past deadlock_timeout "
            f"({deadlock_timeout}), so PostgreSQL cancels it"
        )

    def index_validity(self, name: str) -> bool | None:  # None: no such index
        return self.value(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
        )

    def create_index(self, name: str, create: str, *, timeout: str = "2h") -> None:
        """Build an index CONCURRENTLY; drop an invalid leftover first, and after a failed build.

        No short lock timeout: the build's waits (older transactions, SHARE UPDATE
        EXCLUSIVE) queue no reads or writes, and a retry would throw away a finished
        scan. ``timeout`` bounds it; the sessions it waits for are named meanwhile.
        """
        valid = self.index_validity(name)
        if valid:
            self.say(f"  index {name} exists and is valid")
            return
        with self.concurrently(f"index {name}", timeout):
            if valid is False:
                self.say(f"  index {name} is invalid (an earlier build failed); dropping it")
                self.conn.execute(drop_concurrently(name))
            self.say(f"  building index {name} concurrently (statement_timeout {timeout})")
            try:
                self.conn.execute(sql_text(create))
            except BaseException as exc:  # Ctrl-C too: an invalid UNIQUE index rejects writes
                self.drop_failed_build(name, exc)
                raise

    def drop_failed_build(self, name: str, exc: BaseException) -> None:
        """Drop the invalid index a failed build leaves, or say the statement that does."""
        if self.conn.broken or self.index_validity(name) is None:
            return
        self.say(f"  building index {name} failed ({first_line(exc)}); dropping what it left")
        try:
            if isinstance(exc, KeyboardInterrupt):  # the operator wants out: a few seconds only
                self.conn.execute("SET statement_timeout = '3s'")
            self.conn.execute(drop_concurrently(name))
        except (psycopg.Error, KeyboardInterrupt) as drop_exc:
            self.say(
                f"  the invalid index stays ({first_line(drop_exc)}); drop it with "
                f"DROP INDEX CONCURRENTLY IF EXISTS {name}, or run the migration again"
            )

    def drop_index(self, name: str, *, timeout: str = "1h") -> None:
        """Drop an index, if it exists, CONCURRENTLY (no write waits for it)."""
        if self.index_validity(name) is not None:
            with self.concurrently(f"dropping index {name}", timeout):
                self.conn.execute(drop_concurrently(name))

    @contextmanager
    def concurrently(self, what: str, timeout: str):
        """Run CONCURRENTLY statements without a lock timeout, naming what they wait for."""
        self.conn.execute(
            sql.SQL("SET lock_timeout = 0; SET statement_timeout = {}").format(timeout)
        )
        try:
            with watching(self.conn, what, self.say):
                yield
        finally:
            if not self.conn.broken:
                self.conn.execute("RESET lock_timeout; RESET statement_timeout")

    def set_not_null(self, table: str, column: str) -> None:
        """SET NOT NULL through a validated CHECK, so no scan runs under ACCESS EXCLUSIVE.

        CHECK … NOT VALID takes a brief lock; VALIDATE scans under one that lets
        writes through; SET NOT NULL then trusts the check and skips its own scan.
        Each step is skipped once done: a stopped run is finished by running it again.
        """
        check = not_null_check(table, column)
        not_null = (
            f"SELECT 1 FROM pg_attribute WHERE attrelid = '{table}'::regclass "
            f"AND attname = '{column}' AND attnotnull"
        )
        self.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID",
            unless=f"{not_null} UNION ALL SELECT 1 FROM pg_constraint "
            f"WHERE conrelid = '{table}'::regclass AND conname = '{check}'",
        )
        self.say(f"  {check} is NOT VALID; validating it (writes go on)")
        self.execute(
            f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}", unless=not_null, timeout="1h"
        )
        self.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
        self.execute(
            f"""
            -- The check only proved SET NOT NULL safe; NOT NULL now guarantees the same.
            -- squawk-ignore ban-drop-constraint
            ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}
            """
        )

    def drop_not_null(self, table: str, column: str) -> None:
        """DROP NOT NULL, and any check a stopped ``set_not_null`` left: catalog-only."""
        self.execute(
            f"""
            -- squawk-ignore ban-drop-constraint
            ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {not_null_check(table, column)}
            """
        )
        self.execute(
            f"""
            -- squawk-ignore ban-drop-not-null
            ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL
            """
        )

    def backfill(self, table: str, update: str, what: str, batch_size: int = 10_000) -> None:
        """Run ``update`` over ``table`` in primary-key ranges, one commit per batch.

        ``update`` bounds ``id`` with ``%(after)s`` and ``%(upto)s`` and skips rows
        already done, so a re-run does only what is left; memory stays flat.
        """
        table_id = sql.Identifier(table)
        low, high = self.conn.execute(
            sql.SQL("SELECT min(id), max(id) FROM {}").format(table_id)
        ).fetchone()
        if low is None:
            self.say(f"  {table} is empty; 0 {what}")
            return
        self.say(f"  {table}: ids {low:,}..{high:,}; batches of {batch_size:,}")
        done, after, started, last_report = 0, low - 1, time.monotonic(), time.monotonic()
        while after < high:
            upto = min(after + batch_size, high)
            changed = self.execute(update, {"after": after, "upto": upto}, timeout=BATCH_TIMEOUT)
            done += changed
            after = upto
            if not changed:  # perhaps a gap in ids: jump to just before the next one
                following = self.value(
                    sql.SQL("SELECT min(id) FROM {} WHERE id > %s").format(table_id), (upto,)
                )
                after = high if following is None else min(following - 1, high)
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


def not_null_check(table: str, column: str) -> str:
    """Name the CHECK ``set_not_null`` builds on, and ``drop_not_null`` removes if left."""
    check = f"{table}_{column}_check_not_null"  # names written in a script, not input
    # PostgreSQL would cut a longer name silently, and a re-run would not find it.
    assert len(check.encode()) <= 63, f"constraint name {check!r} is over 63 bytes"
    return check
