"""The machinery every migration script shares.

A migration is declared as data: a version, a name, and two lists of steps
(upgrade and downgrade). This module runs them safely against a live database:

- one session-level advisory lock per run, taken with ``pg_try_advisory_lock`` so
  a second run at the same time refuses at once instead of interleaving;
- a ``schema_migrations`` table recording what is applied; re-running what is
  applied (or rolling back what is not) is a no-op that says so, and a step out
  of order is refused, naming the missing one;
- every DDL statement in a short transaction under a short ``lock_timeout``,
  retried with backoff when the lock is not granted (SQLSTATE 55P03), so a
  migration queued behind a long transaction never blocks the live traffic
  queued behind *it*;
- steps that must run outside a transaction (``CREATE INDEX CONCURRENTLY``,
  batched backfills) run on the autocommit connection; concurrent index builds
  and drops wait without a short lock timeout, since their waits queue nobody;
- an upgrade that fails part-way changes nothing: its own downgrade steps
  (idempotent, safe on a half-applied state) undo what the run did, and when
  that fails too the error says exactly what is left and how to remove it.

Steps are idempotent on their own, so a run interrupted half-way (Ctrl-C) is
finished by simply running the script again.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from typing import ClassVar

import psycopg
from psycopg import sql

from migrations.schema_state import difference, schema_objects, valid_indexes

# Arbitrary but fixed: every migration run of this project takes this key.
ADVISORY_LOCK_KEY = 7_140_203_001

# While DDL waits for its lock, every query on the table queues behind it: this
# bounds that wait under the service's 2 s budget. A plain autovacuum in the way
# is cancelled after deadlock_timeout (1 s by default), so one attempt outlasts it.
LOCK_TIMEOUT = "1500ms"
MAX_LOCK_ATTEMPTS = 10
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0


class MigrationError(Exception):
    """A migration cannot proceed; the message is the one line the operator sees."""


@dataclass
class Run:
    """What one run did, for the operator's output and for benchmarks."""

    lock_retries: int = 0
    out: Callable[[str], None] | None = None
    current: str = ""  # the migration being moved, for the line an interrupted run prints
    moved: int = 0  # migrations finished by this command, for the line an interrupted run prints
    # Set by data-moving steps that changed rows in this migration's run: the undo must run.
    moved_rows: bool = False
    # Indexes valid before a failed upgrade: its undo keeps them (they are not this run's).
    keep_indexes: frozenset[str] = frozenset()

    def say(self, line: str) -> None:
        """Print one progress line, at once even when stdout is a pipe or a log file."""
        if self.out is None:
            print(line, flush=True)
        else:
            self.out(line)


@dataclass(frozen=True)
class Sql:
    """DDL run in one short transaction under ``lock_timeout``, retried on lock timeout.

    ``skip_if`` is a query that returns a row when the step's effect is already
    there (for statements PostgreSQL has no ``IF [NOT] EXISTS`` for).
    """

    # One transaction: when it fails, it has changed nothing.
    atomic: ClassVar[bool] = True
    statements: str
    skip_if: str | None = None
    statement_timeout: str = "60s"

    def sql_text(self) -> str:
        """Return the SQL this step runs, framed as it runs (transaction, timeouts)."""
        return "\n".join(
            [
                "BEGIN;",
                f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';",
                f"SET LOCAL statement_timeout = '{self.statement_timeout}';",
                dedent(self.statements).strip().rstrip(";") + ";",
                "COMMIT;",
            ]
        )

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Run the statements unless ``skip_if`` says they are done."""
        if self.skip_if and conn.execute(self.skip_if).fetchone():
            return

        def attempt() -> None:
            with conn.transaction():
                set_timeouts(conn, LOCK_TIMEOUT, self.statement_timeout, local=True)
                conn.execute(self.statements)

        with_lock_retries(attempt, run, first_line(self.statements))


@dataclass(frozen=True)
class Check:
    """A precondition: ``test(conn)`` returns None when fine, or why the step cannot go on."""

    test: Callable[[psycopg.Connection], str | None]
    read_only: ClassVar[bool] = True

    def sql_text(self) -> str:
        """Return nothing to lint: a check only reads."""
        return ""

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Raise MigrationError with the reason when the precondition fails."""
        reason = self.test(conn)
        if reason:
            raise MigrationError(reason)


@dataclass(frozen=True)
class Step:
    """A step written in Python (a batched backfill); ``sql`` is what it runs, for linting."""

    action: Callable[[psycopg.Connection, Run], None]
    sql: str = ""

    def sql_text(self) -> str:
        """Return the SQL this step runs, for review and linting."""
        return self.sql.strip()

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Run the action on the autocommit connection."""
        self.action(conn, run)


@dataclass(frozen=True)
class Migration:
    """One numbered migration: what upgrade and downgrade do, as lists of steps."""

    version: int
    name: str
    upgrade: Sequence = field(default_factory=list)
    downgrade: Sequence = field(default_factory=list)

    @property
    def label(self) -> str:
        """Return e.g. ``003 add_call_sid_constraints``."""
        return f"{self.version:03d} {self.name}"


# --- timeouts and lock retries -------------------------------------------------


def set_timeouts(conn, lock_timeout: str, statement_timeout: str, *, local: bool) -> None:
    """Set lock and statement timeouts for this transaction (local) or session."""
    scope = sql.SQL("LOCAL ") if local else sql.SQL("")
    for name, value in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        # Written as the rendered SQL writes it, so what squawk reads is what runs.
        conn.execute(sql.SQL("SET {}{} = {}").format(scope, sql.SQL(name), sql.Literal(value)))


def with_lock_retries(attempt: Callable[[], None], run: Run, what: str) -> None:
    """Call ``attempt`` until it gets its locks, backing off between lock timeouts."""
    delay = FIRST_BACKOFF_SECONDS
    for number in range(1, MAX_LOCK_ATTEMPTS + 1):
        try:
            attempt()
            return
        except psycopg.errors.LockNotAvailable:
            if number == MAX_LOCK_ATTEMPTS:
                raise MigrationError(
                    f"could not get a lock for {what!r} after {number} attempts of "
                    f"{LOCK_TIMEOUT}; find the long transaction holding it "
                    "(pg_stat_activity) and run again"
                ) from None
            run.lock_retries += 1
            run.say(
                f"  lock timeout ({LOCK_TIMEOUT}) on {what!r}, attempt {number}/"
                f"{MAX_LOCK_ATTEMPTS}; retrying in {delay:.1f}s"
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def first_line(statements: str) -> str:
    """Return the first SQL line of a statement group, to name it in messages."""
    for line in statements.strip().splitlines():
        if line.strip() and not line.strip().startswith("--"):
            return line.strip().rstrip(";")[:80]
    return statements.strip()[:80]


# --- the record of what is applied -------------------------------------------------

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def table_exists(conn, name: str) -> bool:
    """Return whether a table of this name is visible on the search path."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def applied_versions(conn) -> set[int]:
    """Return the applied versions, counting baseline tables as 000 (read-only)."""
    versions: set[int] = set()
    if table_exists(conn, "schema_migrations"):
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        versions = {row[0] for row in rows}
    if 0 not in versions and table_exists(conn, "calls"):
        # An existing database from before this tooling: its tables are 000.
        versions.add(0)
    return versions


def ensure_record_table(conn, run: Run) -> None:
    """Create ``schema_migrations`` and record a pre-existing baseline as 000."""
    Sql(SCHEMA_MIGRATIONS).apply(conn, run)
    recorded = conn.execute("SELECT 1 FROM schema_migrations WHERE version = 0").fetchone()
    if not recorded and table_exists(conn, "calls"):
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (0, 'initial_schema') "
            "ON CONFLICT (version) DO NOTHING"
        )
        run.say("000 initial_schema: baseline tables found; recorded as applied")


# --- running one migration ------------------------------------------------------------


def apply_step(conn, migration: Migration, direction: str, step, run: Run) -> None:
    """Run one step; its failure becomes one clear line naming the migration."""
    try:
        step.apply(conn, run)
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.label}: {direction} failed: {one_line(exc)}") from None
    except MigrationError as exc:
        if isinstance(step, Check):  # a refused precondition speaks for itself
            raise
        raise MigrationError(f"{migration.label}: {direction} failed: {exc}") from None


def apply_steps(conn, migration: Migration, direction: str, run: Run) -> None:
    """Run one direction's steps in order."""
    for step in getattr(migration, direction):
        apply_step(conn, migration, direction, step, run)


def changed_anything(done: Sequence, failed) -> bool:
    """Return whether steps that completed, or one that failed half-way, may have changed data."""
    return any(not getattr(step, "read_only", False) for step in done) or not (
        getattr(failed, "read_only", False) or getattr(failed, "atomic", False)
    )


def script_name(migration: Migration) -> str:
    """Return the migration's script, as the operator runs it."""
    return f"migrations/{migration.version:03d}_{migration.name}.py"


def undo_failed_upgrade(conn, migration: Migration, run: Run, failure: MigrationError, before):
    """Run the migration's downgrade steps to undo a failed upgrade; raise why it failed.

    Called only when the run changed something (the schema differs from ``before``,
    or a data-moving step moved rows). An index that was valid before the run was
    not built by it (a build skips a valid index), so ``DropIndexConcurrently``
    keeps it (``run.keep_indexes``); anything else of ``before`` that is gone after
    the undo is named in the error.
    """
    run.say(f"{migration.label}: upgrade failed; undoing what this run did (its downgrade steps)")
    run.keep_indexes = valid_indexes(before)
    try:
        apply_steps(conn, migration, "downgrade", run)
        rebuild_kept_indexes(conn, migration, run, before)
        left = difference(before, schema_objects(conn))
    except (MigrationError, psycopg.Error) as exc:
        undo_error = str(exc) if isinstance(exc, MigrationError) else one_line(exc)
        try:
            left = difference(before, schema_objects(conn)) or "no schema change"
        except psycopg.Error:
            left = "unknown (the connection is lost)"
        run.keep_indexes = frozenset()
        raise MigrationError(
            f"{failure}; undoing it failed too ({undo_error}); left behind: {left}; once the "
            f"cause is gone, remove it with `python {script_name(migration)} downgrade --partial` "
            f"(or finish the upgrade by running the script again)"
        ) from None
    run.keep_indexes = frozenset()
    if left:
        # What the run added is removed with --partial; what it took away, by finishing it.
        remedy = (
            f"remove it with `python {script_name(migration)} downgrade --partial`"
            if "added:" in left
            else f"run `python {script_name(migration)}` again once the cause is gone: "
            "its steps build what is missing"
        )
        raise MigrationError(
            f"{failure}; its downgrade steps ran but the schema differs from before: {left}; "
            f"{remedy}"
        )
    run.say(f"{migration.label}: undone; the schema is as it was before this run")
    raise MigrationError(f"{failure}; undone, the schema is as it was")


def rebuild_kept_indexes(conn, migration: Migration, run: Run, before: set[str]) -> None:
    """Build again an index valid before the run that the undo dropped with something else.

    ``DropIndexConcurrently`` keeps such an index, but a downgrade step may drop it
    another way (003's DROP CONSTRAINT takes the index it was attached with).
    """
    gone = run.keep_indexes - valid_indexes(schema_objects(conn))
    for step in migration.upgrade:
        if getattr(step, "builds_index", False) and step.name in gone:
            run.say(f"  index {step.name} existed before this run; building it again")
            step.apply(conn, run)


def upgrade(conn, migration: Migration, run: Run) -> bool:
    """Apply ``migration`` if it is not applied; return whether it changed anything.

    A failure part-way through is undone with the migration's own downgrade steps,
    unless the failed steps already cleaned up after themselves (the schema is as
    before and no rows were moved): then nothing runs and the failure is raised as is.
    """
    applied = applied_versions(conn)
    if migration.version in applied:
        run.say(f"{migration.label}: already applied; nothing to do")
        return False
    missing = [v for v in range(migration.version) if v not in applied]
    if missing:
        raise MigrationError(
            f"{migration.label}: cannot upgrade before {missing[-1]:03d} is applied "
            f"(run migrations in order; missing: {', '.join(f'{v:03d}' for v in missing)})"
        )
    later = sorted(v for v in applied if v > migration.version)
    if later:
        raise MigrationError(
            f"{migration.label}: later migrations are applied ({later}); the record is inconsistent"
        )
    ensure_record_table(conn, run)
    before = schema_objects(conn)
    started = time.monotonic()
    run.current = migration.label
    run.moved_rows = False
    run.say(f"{migration.label}: upgrading")
    steps = list(migration.upgrade)
    for number, step in enumerate(steps):
        try:
            apply_step(conn, migration, "upgrade", step, run)
        except MigrationError as exc:
            if not changed_anything(steps[:number], step):
                raise
            if conn.broken:
                raise MigrationError(
                    f"{exc}; the connection is lost, so what this run did is not undone: run "
                    f"the script again to finish, or `python {script_name(migration)} "
                    "downgrade --partial` to remove it"
                ) from None
            if not run.moved_rows and schema_objects(conn) == before:
                raise  # the failed step cleaned up after itself: nothing to undo
            undo_failed_upgrade(conn, migration, run, exc, before)
    conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
        (migration.version, migration.name),
    )
    run.say(f"{migration.label}: upgrade applied in {time.monotonic() - started:.2f}s")
    run.current = ""
    return True


def downgrade(conn, migration: Migration, run: Run, *, partial: bool = False) -> bool:
    """Roll ``migration`` back if it is applied; return whether it changed anything.

    ``partial``: run the downgrade steps even though the migration is not recorded
    as applied, to remove what a failed upgrade left when its own undo failed.
    """
    applied = applied_versions(conn)
    if partial and migration.version in applied:  # a full rollback would drop its data
        raise MigrationError(
            f"{migration.version:03d} is applied; --partial is only for a failed upgrade; "
            "use plain downgrade"
        )
    if migration.version not in applied and not partial:
        run.say(f"{migration.label}: not applied; nothing to roll back")
        return False
    missing = [v for v in range(migration.version) if v not in applied]
    if migration.version not in applied and missing:  # partial: only the next one can have failed
        raise MigrationError(
            f"{migration.label}: not applied, and {missing[-1]:03d} before it is not either: "
            "no failed upgrade of it can have left anything"
        )
    later = sorted(v for v in applied if v > migration.version)
    if later:
        raise MigrationError(
            f"{migration.label}: cannot roll back while {later[-1]:03d} is applied "
            f"(roll back in reverse order: {', '.join(f'{v:03d}' for v in reversed(later))} first)"
        )
    ensure_record_table(conn, run)
    started = time.monotonic()
    run.current = migration.label
    if migration.version in applied:
        run.say(f"{migration.label}: rolling back")
    else:
        run.say(f"{migration.label}: not applied; removing what a failed upgrade left")
    apply_steps(conn, migration, "downgrade", run)
    conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.version,))
    run.say(f"{migration.label}: downgrade applied in {time.monotonic() - started:.2f}s")
    run.current = ""
    return True


# --- the chain of scripts -----------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).resolve().parent


def load_chain() -> list[Migration]:
    """Return every ``NNN_name.py`` migration in this folder, in version order."""
    chain = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"migrations.m{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        chain.append(module.MIGRATION)
    versions = [m.version for m in chain]
    if versions != list(range(len(chain))):
        raise MigrationError(f"migration files are not numbered 000..N without gaps: {versions}")
    return chain


# --- connections, the lock, and the command line ---------------------------------------


def connect(url: str) -> psycopg.Connection:
    """Open the migration's autocommit connection, with one clear error when it cannot."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name="migrations"
        )
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {one_line(exc)}") from None


class Locked:
    """Hold the project's advisory lock for the duration of a run, or refuse."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def __enter__(self) -> psycopg.Connection:
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if not got[0]:
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
        if not self.conn.closed:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def one_line(exc: BaseException) -> str:
    """Return the first line of an exception's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_url(given: str | None) -> str:
    """Return the URL ``db.url_of`` finds (the development database too), or refuse."""
    import db

    try:
        return db.url_of(given)
    except db.NoDatabase as exc:
        raise MigrationError(str(exc)) from None


def run_migration(
    url: str, migration: Migration, direction: str, run: Run | None = None, *, partial=False
) -> Run:
    """Upgrade or downgrade one migration under the advisory lock."""
    run = run or Run()
    conn = connect(url)
    try:
        with Locked(conn):
            if direction == "upgrade":
                upgrade(conn, migration, run)
            else:
                downgrade(conn, migration, run, partial=partial)
    except psycopg.Error as exc:  # the connection itself failed (steps report their own)
        raise MigrationError(f"{migration.label}: {direction} failed: {one_line(exc)}") from None
    finally:
        conn.close()
    return run


def main(migration: Migration, argv: list[str] | None = None) -> int:
    """Command line of one migration script: ``[upgrade|downgrade] [--database-url URL]``."""
    parser = argparse.ArgumentParser(description=f"Migration {migration.label}.")
    parser.add_argument("direction", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="downgrade: remove what a failed upgrade left, though it is not recorded as applied",
    )
    args = parser.parse_args(argv)
    if args.partial and args.direction != "downgrade":
        parser.error("--partial goes with downgrade")
    try:
        run_migration(
            database_url(args.database_url), migration, args.direction, partial=args.partial
        )
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        undo = (
            f", or remove what it did with `python {script_name(migration)} downgrade --partial`"
            if args.direction == "upgrade"
            else ""
        )
        message = f"{migration.label}: interrupted; run it again to finish{undo}"
        print(f"error: {message}", file=sys.stderr)
        return 130
    return 0
