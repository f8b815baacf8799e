"""Step types for changing a large live table without blocking its traffic.

Each runs on the migration's autocommit connection and is idempotent, so a run
interrupted half-way is finished by running the script again:

- ``ConcurrentIndex``: ``CREATE [UNIQUE] INDEX CONCURRENTLY`` outside a
  transaction, without a short lock timeout (its waits queue no traffic), saying
  which sessions it waits for; an invalid index left by an earlier failed build
  is dropped (concurrently) and rebuilt, because ``IF NOT EXISTS`` would accept
  it as is, and a build that fails drops the invalid index it leaves;
- ``DropIndexConcurrently``: its counterpart for downgrades;
- ``Backfill``: an ``UPDATE`` in primary-key ranges, one commit per batch, with
  progress lines and the final count;
- ``SetNotNull``: NOT NULL without a long ACCESS EXCLUSIVE scan: a ``CHECK …
  NOT VALID``, validated under a lock that lets writes through, proves the
  column has no NULLs, so ``SET NOT NULL`` skips its scan; then the check goes;
- ``Report``: a read-only query whose rows the operator sees.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from textwrap import dedent
from typing import ClassVar

import psycopg
from psycopg import sql

from migrations.kit import (
    LOCK_TIMEOUT,
    MigrationError,
    Run,
    Sql,
    one_line,
    set_timeouts,
    with_lock_retries,
)
from migrations.waits import WaitWatch

# Concurrent index builds and drops wait without a lock timeout ('0': none); see
# ConcurrentIndex for why, and statement_timeout for what bounds them.
CONCURRENT_LOCK_TIMEOUT = "0"
# After Ctrl-C, dropping a build's leftover waits this long at most, then says what is left.
INTERRUPTED_DROP_TIMEOUT = "3s"
# One backfill batch: a primary-key range of at most batch_size rows.
BATCH_TIMEOUT = "60s"


def index_validity(conn, name: str) -> bool | None:
    """Return None when the index does not exist, else whether it is valid."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", (name,)
    ).fetchone()
    return None if row is None else row[0]


@contextmanager
def session_timeouts(conn, lock_timeout: str, statement_timeout: str):
    """Set timeouts for statements that cannot run in a transaction; reset them after."""
    set_timeouts(conn, lock_timeout, statement_timeout, local=False)
    try:
        yield
    finally:
        if not conn.broken:  # a lost connection has no settings left to reset
            conn.execute("RESET lock_timeout")
            conn.execute("RESET statement_timeout")


def drop_index_concurrently(conn, name: str) -> None:
    """Drop an index without blocking writes to its table (outside a transaction)."""
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))


def concurrent_sql_text(statement_timeout: str, statements: list[str]) -> str:
    """Return statements run outside a transaction as they run: timeouts set, then reset."""
    return "\n".join(
        [
            "-- No short lock_timeout: a concurrent build or drop only ever waits in ways",
            "-- that queue no reads or writes (SHARE UPDATE EXCLUSIVE, older transactions);",
            "-- statement_timeout bounds the whole wait.",
            f"SET lock_timeout = '{CONCURRENT_LOCK_TIMEOUT}';",
            f"SET statement_timeout = '{statement_timeout}';",
            *statements,
            "RESET lock_timeout;",
            "RESET statement_timeout;",
        ]
    )


@dataclass(frozen=True)
class ConcurrentIndex:
    """Build an index with ``CREATE … INDEX CONCURRENTLY``; rebuild an invalid leftover.

    No lock timeout and no retries: the build's waits never queue application
    traffic, and a retry would throw away a finished table scan. It waits as long
    as ``statement_timeout`` allows, saying which sessions it waits for; when it
    fails, it drops the invalid index it leaves (an invalid UNIQUE index still
    rejects duplicates), so nothing is left behind.
    """

    name: str
    create: str
    # The build reads the whole table twice; only here is a long statement expected.
    statement_timeout: str = "2h"
    builds_index: ClassVar[bool] = True  # the undo may build it again (kit.rebuild_kept_indexes)

    def sql_text(self) -> str:
        """Return the SQL this step runs, for review and linting."""
        return concurrent_sql_text(
            self.statement_timeout,
            [
                "-- Only when an invalid index is left from a failed build:",
                f"DROP INDEX CONCURRENTLY IF EXISTS {self.name};",
                dedent(self.create).strip().rstrip(";") + ";",
                "-- Only when the build fails: the same DROP, so no invalid index stays.",
            ],
        )

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Build the index unless a valid one exists, dropping an invalid one first."""
        if index_validity(conn, self.name):
            run.say(f"  index {self.name} exists and is valid")
            return
        what = f"index {self.name}"
        with (
            session_timeouts(conn, CONCURRENT_LOCK_TIMEOUT, self.statement_timeout),
            WaitWatch(conn, run.say, what) as watch,
        ):
            if index_validity(conn, self.name) is False:
                # A failed or interrupted build leaves an invalid index behind.
                run.say(f"  index {self.name} is invalid (an earlier build failed); rebuilding")
                drop_index_concurrently(conn, self.name)
            run.say(
                f"  building index {self.name} concurrently"
                f" (statement_timeout {self.statement_timeout})"
            )
            try:
                conn.execute(dedent(self.create).strip())
            except BaseException as exc:  # Ctrl-C too: never leave the invalid index behind
                self.drop_leftover(conn, run, exc, watch.last)
                raise

    def drop_leftover(self, conn, run: Run, exc: BaseException, waited_for: str) -> None:
        """Drop the invalid index a failed build leaves; say what is left when that fails too.

        After Ctrl-C the drop gets only a few seconds (it waits for the same old
        transactions the build waited for); a second Ctrl-C stops it at once.
        Whenever the index stays, the line says so with the SQL that drops it.
        """
        reason = one_line(exc)
        if waited_for:
            reason += f", waiting for {waited_for}"
        if conn.broken:
            raise MigrationError(
                f"could not build index {self.name} ({reason}) and the connection is lost; "
                f"an invalid index may be left: {self.drop_it()}, or run the migration again"
            ) from None
        if index_validity(conn, self.name) is None:
            return
        run.say(f"  {self.what_failed(reason)}; dropping the invalid index it left")
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            if interrupted:
                with session_timeouts(conn, INTERRUPTED_DROP_TIMEOUT, INTERRUPTED_DROP_TIMEOUT):
                    drop_index_concurrently(conn, self.name)
            else:
                drop_index_concurrently(conn, self.name)
        except (psycopg.Error, KeyboardInterrupt) as drop_exc:
            left = f"the invalid index it left stays ({one_line(drop_exc)}): {self.drop_it()}"
            if interrupted or isinstance(drop_exc, KeyboardInterrupt):
                run.say(f"  {self.what_failed(reason)}; {left}")
                raise KeyboardInterrupt from None
            raise MigrationError(f"{self.what_failed(reason)}, and {left}") from None

    def drop_it(self) -> str:
        """Return the SQL that drops a leftover of this build, and why it matters."""
        unique = " (until then, an invalid UNIQUE index still rejects duplicate writes)"
        return f"drop it with DROP INDEX CONCURRENTLY IF EXISTS {self.name}" + (
            unique if "UNIQUE" in self.create.upper() else ""
        )

    def what_failed(self, reason: str) -> str:
        """Return e.g. ``building index x failed (…)``."""
        return f"building index {self.name} failed ({reason})"


@dataclass(frozen=True)
class DropIndexConcurrently:
    """Drop an index, if it exists, with ``DROP INDEX CONCURRENTLY`` (outside a transaction).

    Like the build: no lock timeout (it waits for transactions using the table,
    queueing no traffic), bounded by ``statement_timeout``, naming what it waits for.
    """

    name: str
    statement_timeout: str = "1h"

    def sql_text(self) -> str:
        """Return the SQL this step runs, for review and linting."""
        return concurrent_sql_text(
            self.statement_timeout, [f"DROP INDEX CONCURRENTLY IF EXISTS {self.name};"]
        )

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Drop the index unless it is already gone."""
        if index_validity(conn, self.name) is None:
            return
        if self.name in run.keep_indexes:  # undoing a failed upgrade: not built by that run
            run.say(f"  index {self.name} existed before this run; kept")
            return
        with (
            session_timeouts(conn, CONCURRENT_LOCK_TIMEOUT, self.statement_timeout),
            WaitWatch(conn, run.say, f"dropping index {self.name}"),
        ):
            drop_index_concurrently(conn, self.name)


@dataclass(frozen=True)
class Backfill:
    """Run ``update`` over the table in primary-key ranges, one commit per batch.

    ``update`` is an UPDATE with ``%(after)s`` and ``%(upto)s`` bounding ``id``;
    its own WHERE clause must skip rows already done, so a re-run only does what
    is left. Batches are ranges of the primary key (walked with the index, never
    from a list of ids), so memory stays flat whatever the table size.
    """

    table: str
    update: str
    what: str = "rows updated"
    batch_size: int = 20_000
    progress_every_seconds: float = 2.0

    def sql_text(self) -> str:
        """Return one batch as it runs (its own transaction, timeouts), with sample bounds."""
        text = dedent(self.update).strip().rstrip(";")
        return "\n".join(
            [
                "BEGIN;",
                f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';",
                f"SET LOCAL statement_timeout = '{BATCH_TIMEOUT}';",
                text.replace("%(after)s", "0").replace("%(upto)s", str(self.batch_size)) + ";",
                "COMMIT;",
            ]
        )

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Walk the primary key from the lowest id to the highest, printing progress."""
        table = sql.Identifier(self.table)
        low, high = conn.execute(
            sql.SQL("SELECT min(id), max(id) FROM {}").format(table)
        ).fetchone()
        if low is None:
            run.say(f"  {self.table} is empty; 0 {self.what}")
            return
        estimate = conn.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            (self.table,),
        ).fetchone()[0]
        run.say(
            f"  {self.table}: ids {low}..{high}, about {estimate:,} rows;"
            f" batches of {self.batch_size:,}"
        )
        done, after, started = 0, low - 1, time.monotonic()
        last_report = started
        while after < high:
            upto = min(after + self.batch_size, high)
            changed = self.run_batch(conn, run, after, upto)
            done += changed
            run.moved_rows = run.moved_rows or changed > 0  # a failed upgrade must undo them
            after = upto if changed else self.skip_gap(conn, table, upto, high)
            now = time.monotonic()
            if now - last_report >= self.progress_every_seconds or after >= high:
                last_report = now
                share = (after - low + 1) / (high - low + 1)
                rate = done / max(now - started, 1e-9)
                run.say(
                    f"  {done:,} {self.what}; ids up to {after:,} of {high:,} ({share:.0%}"
                    f" of ~{estimate:,} rows); {rate:,.0f} rows/s"
                )
        run.say(f"  total: {done:,} {self.what} in {time.monotonic() - started:.2f}s")

    def skip_gap(self, conn, table, upto: int, high: int) -> int:
        """Return where the next batch starts after an empty one: just before the next id."""
        # Ranges of ids are cheapest when ids are dense; after a batch that changed
        # nothing (a gap, or rows already done) one index probe jumps to the next id.
        following = conn.execute(
            sql.SQL("SELECT min(id) FROM {} WHERE id > %s").format(table), (upto,)
        ).fetchone()[0]
        return high if following is None else min(following - 1, high)

    def run_batch(self, conn, run: Run, after: int, upto: int) -> int:
        """Update one id range in its own short transaction; return the rows changed."""
        changed = 0

        def attempt() -> None:
            nonlocal changed
            with conn.transaction():
                set_timeouts(conn, LOCK_TIMEOUT, BATCH_TIMEOUT, local=True)
                changed = conn.execute(self.update, {"after": after, "upto": upto}).rowcount

        with_lock_retries(attempt, run, f"{self.table} ids {after + 1}..{upto}")
        return changed


@dataclass(frozen=True)
class SetNotNull:
    """Make ``column`` NOT NULL via a validated CHECK, so ``SET NOT NULL`` skips its scan."""

    table: str
    column: str
    # VALIDATE reads the whole table, but under SHARE UPDATE EXCLUSIVE: writes go on.
    validate_timeout: str = "1h"

    @property
    def check_name(self) -> str:
        """Return the temporary check's name (not ``…_not_null``: PostgreSQL 18 uses that)."""
        return f"{self.table}_{self.column}_check_not_null"

    def statements(self) -> tuple[str, str, str]:
        """Return the add-check, validate and set-not-null-and-drop-check SQL."""
        t, c, k = self.table, self.column, self.check_name
        return (
            f"ALTER TABLE {t} ADD CONSTRAINT {k} CHECK ({c} IS NOT NULL) NOT VALID",
            f"ALTER TABLE {t} VALIDATE CONSTRAINT {k}",
            f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;\n"
            "-- The check only proved SET NOT NULL safe; NOT NULL now guarantees the same.\n"
            "-- squawk-ignore ban-drop-constraint\n"
            f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {k}",
        )

    def sql_text(self) -> str:
        """Return the SQL this step runs, for review and linting."""
        add, validate, finish = self.statements()
        steps = ((add, "60s"), (validate, self.validate_timeout), (finish, "60s"))
        return "\n".join(
            [
                "-- When VALIDATE or SET NOT NULL fails after this run added the check, the",
                "-- check is dropped again (the last DROP CONSTRAINT, in its own transaction).",
                *(Sql(text, statement_timeout=timeout).sql_text() for text, timeout in steps),
            ]
        )

    def is_done(self, conn) -> bool:
        """Return whether the column is already NOT NULL."""
        row = conn.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
            (self.table, self.column),
        ).fetchone()
        return bool(row and row[0])

    def has_check(self, conn) -> bool:
        """Return whether the temporary check constraint exists."""
        return bool(
            conn.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s",
                (self.table, self.check_name),
            ).fetchone()
        )

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Add, validate, set NOT NULL, drop the check; on failure, drop the check it added."""
        add, validate, finish = self.statements()
        if self.is_done(conn) and not self.has_check(conn):
            run.say(f"  {self.table}.{self.column} is already NOT NULL")
            return
        added = False
        if not self.is_done(conn) and not self.has_check(conn):
            Sql(add).apply(conn, run)
            added = True
            run.say(f"  added {self.check_name} NOT VALID; validating it (writes go on)")
        try:
            if not self.is_done(conn):
                Sql(validate, statement_timeout=self.validate_timeout).apply(conn, run)
            Sql(finish).apply(conn, run)
        except psycopg.errors.CheckViolation:
            # Leave nothing behind: a lingering check would reject NULL inserts.
            self.drop_check(conn, run, "it found NULL values")
            raise MigrationError(
                f"{self.table}.{self.column} has NULL values; nothing changed"
            ) from None
        except (psycopg.Error, MigrationError, KeyboardInterrupt) as exc:
            # Lock retries used up, a statement timeout, Ctrl-C: the check this run
            # added must not stay, or the column's NULL inserts fail from now on.
            if added:
                self.drop_check(conn, run, one_line(exc))
            raise

    def drop_check(self, conn, run: Run, why: str) -> None:
        """Drop the temporary check (with lock retries); say exactly what is left if that fails."""
        drop = f"ALTER TABLE {self.table} DROP CONSTRAINT IF EXISTS {self.check_name}"
        run.say(f"  {self.table}.{self.column}: {why}; dropping {self.check_name}")
        try:
            if conn.broken:
                raise MigrationError("the connection is lost")
            Sql(drop).apply(conn, run)
        except (psycopg.Error, MigrationError, KeyboardInterrupt) as exc:
            left = (
                f"making {self.table}.{self.column} NOT NULL failed ({why}), and its check "
                f"{self.check_name} is left ({one_line(exc)}); it rejects rows with a NULL "
                f"{self.column} until dropped: {drop}"
            )
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C stays Ctrl-C: say what is left
                run.say(f"  {left}")
                raise KeyboardInterrupt from None
            raise MigrationError(left) from None


@dataclass(frozen=True)
class Report:
    """Print the rows of a read-only query, one line each, under a title."""

    title: str
    query: str
    read_only: ClassVar[bool] = True

    def sql_text(self) -> str:
        """Return nothing to lint: a report only reads."""
        return ""

    def apply(self, conn: psycopg.Connection, run: Run) -> None:
        """Run the query and print its rows."""
        run.say(f"  {self.title}:")
        for row in conn.execute(self.query).fetchall():
            run.say("    " + "  ".join("" if v is None else str(v) for v in row))
