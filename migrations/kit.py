"""What every migration script shares: the record, the lock, and statements safe on a live table.

A script is a module with ``VERSION``, ``NAME``, ``upgrade(db)`` and
``downgrade(db)`` (and, when rolling it back can lose data or be impossible,
``before_downgrade(db)``). Each function reads top to bottom as the SQL it
runs, through the ``Db`` handle below:

- ``db.execute(sql)``: DDL in one short transaction under a short ``lock_timeout``, retried
  with jittered backoff, naming the sessions in the way;
- ``db.create_index`` / ``db.drop_index``: ``CONCURRENTLY``, an invalid leftover
  of a failed build dropped first, what the build waits for named;
- ``db.backfill``: an UPDATE in primary-key ranges, a commit per batch, progress.

Every statement is idempotent, so a run that fails or is interrupted part-way
is finished by running it again, or removed by its downgrade; the error line
says both commands.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from types import ModuleType

import psycopg
from psycopg import sql

from errors import first_line
from migrations.waits import WaitWatch, blocking_sessions

# Arbitrary but fixed: every migration run of this project takes this key.
ADVISORY_LOCK_KEY = 7_140_203_001

# While DDL waits for its lock, every request on the table queues behind it:
# 100 ms keeps the slowest request of the live service under 250 ms. Attempts
# back off (doubling, with jitter so they do not fall into step with a periodic
# job) for about two minutes in all before giving up.
LOCK_TIMEOUT = "100ms"
MAX_LOCK_ATTEMPTS = 20
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
BATCH_TIMEOUT = "60s"

SCRIPTS_DIR = Path(__file__).resolve().parent


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


def label(migration: ModuleType) -> str:
    """Return e.g. ``003 add_call_sid_constraints``."""
    return f"{migration.VERSION:03d} {migration.NAME}"


def script(migration: ModuleType) -> str:
    """Return the command that runs this migration's script, as the operator types it."""
    return f".venv/bin/python migrations/{migration.VERSION:03d}_{migration.NAME}.py"


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


# --- the record of what is applied ----------------------------------------------------------


def table_exists(conn, name: str) -> bool:
    """Return whether a table of this name is visible on the search path."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def applied_versions(conn) -> set[int]:
    """Return the applied versions, counting baseline tables as 000 (read-only)."""
    versions: set[int] = set()
    if table_exists(conn, "schema_migrations"):
        versions = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    if table_exists(conn, "calls"):  # a database from before this tooling: its tables are 000
        versions.add(0)
    return versions


def record_baseline(conn, run: Run) -> None:
    """Create ``schema_migrations`` if missing, recording baseline tables found as 000."""
    Db(conn, run).execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    if (
        table_exists(conn, "calls")
        and conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (0, 'initial_schema') "
            "ON CONFLICT (version) DO NOTHING"
        ).rowcount
    ):
        run.say("000 initial_schema: baseline tables found; recorded as applied")


def record(conn, migration: ModuleType, applied: bool) -> None:
    """Record ``migration`` as applied, or as not applied."""
    if applied:
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s) "
            "ON CONFLICT (version) DO NOTHING",
            (migration.VERSION, migration.NAME),
        )
    else:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.VERSION,))


def out_of_order(migration: ModuleType, applied: set[int], direction: str) -> str | None:
    """Return why ``migration`` cannot move in ``direction`` now, or None."""
    name = label(migration)
    missing = [v for v in range(migration.VERSION) if v not in applied]
    later = sorted((v for v in applied if v > migration.VERSION), reverse=True)
    if direction == "upgrade" and missing:
        return (
            f"{name}: cannot upgrade before {missing[-1]:03d} is applied "
            f"(run migrations in order; missing: {', '.join(f'{v:03d}' for v in missing)})"
        )
    if later:
        return (
            f"{name}: cannot {direction.replace('downgrade', 'roll back')} while "
            f"{later[0]:03d} is applied (roll back in "
            f"reverse order: {', '.join(f'{v:03d}' for v in later)} first)"
        )
    return None


# --- moving one migration ---------------------------------------------------------------------


def upgrade(conn, migration: ModuleType, run: Run) -> bool:
    """Apply ``migration`` unless it is applied; return whether it ran."""
    applied = applied_versions(conn)
    if migration.VERSION in applied:
        run.say(f"{label(migration)}: already applied; nothing to do")
        return False
    refused = out_of_order(migration, applied, "upgrade")
    if refused:
        raise MigrationError(refused)
    return apply(conn, migration, "upgrade", run)


def downgrade(conn, migration: ModuleType, run: Run) -> bool:
    """Roll ``migration`` back: when applied, or when a failed run of it may have left something."""
    applied = applied_versions(conn)
    if migration.VERSION not in applied and max(applied, default=-1) + 1 != migration.VERSION:
        run.say(f"{label(migration)}: not applied; nothing to roll back")
        return False
    refused = out_of_order(migration, applied, "downgrade")
    if refused:
        raise MigrationError(refused)
    if migration.VERSION not in applied:
        # Its downgrade is idempotent: it removes what a stopped upgrade left, or nothing.
        run.say(f"{label(migration)}: not applied; removing anything a stopped upgrade left")
    return apply(conn, migration, "downgrade", run)


def apply(conn, migration: ModuleType, direction: str, run: Run) -> bool:
    """Run one direction of ``migration`` and record it; a failure leaves ``run.current`` set."""
    started = time.monotonic()
    record_baseline(conn, run)
    run.current = migration
    run.say(f"{label(migration)}: {'upgrading' if direction == 'upgrade' else 'rolling back'}")
    try:
        getattr(migration, direction)(Db(conn, run))
        record(conn, migration, direction == "upgrade")
    except Refused:
        run.current = None  # refused before changing anything: nothing to finish
        raise
    except (MigrationError, psycopg.Error) as exc:
        reason = str(exc) if isinstance(exc, MigrationError) else first_line(exc)
        raise MigrationError(f"{label(migration)}: {direction} failed: {reason}") from None
    run.say(f"{label(migration)}: {direction} applied in {time.monotonic() - started:.2f}s")
    run.current = None
    run.done.append(label(migration))
    return True


def check_downgrades(conn, migrations: list[ModuleType], run: Run) -> list[str]:
    """Run every ``before_downgrade`` of a rollback first; refuse or return what it drops."""
    db = Db(conn, run)
    for migration in migrations:
        check = getattr(migration, "before_downgrade", None)
        if check:
            before = len(db.losses)
            check(db)
            db.losses[before:] = [f"{label(migration)} drops {loss}" for loss in db.losses[before:]]
    return db.losses


# --- the chain of scripts, the connection, the lock ----------------------------------------


def load_chain() -> list[ModuleType]:
    """Return every ``NNN_name.py`` migration module in this folder, in version order."""
    chain = []
    for path in sorted(SCRIPTS_DIR.glob("[0-9][0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"migrations.m{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        chain.append(module)
    versions = [m.VERSION for m in chain]
    if versions != list(range(len(chain))):
        raise MigrationError(f"migration files are not numbered 000..N without gaps: {versions}")
    return chain


def connect(url: str) -> psycopg.Connection:
    """Open the migration's autocommit connection, with one clear error when it cannot."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name="migrations"
        )
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {first_line(exc)}") from None


class Locked:
    """Hold the project's advisory lock for the duration of a run, or refuse at once."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def __enter__(self) -> psycopg.Connection:
        if not self.conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)
        ).fetchone()[0]:
            holder = self.conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = %s LIMIT 1",
                (ADVISORY_LOCK_KEY,),
            ).fetchone()
            who = f" (backend pid {holder[0]})" if holder else ""
            raise MigrationError(
                f"another migration run holds the migration lock{who}; wait for it to finish"
            )
        return self.conn

    def __exit__(self, *exc) -> None:
        if not self.conn.closed and not self.conn.broken:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
