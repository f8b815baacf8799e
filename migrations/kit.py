"""What every migration run shares: the record, the order, the lock, the chain of scripts.

A script is a module with ``VERSION``, ``NAME``, ``upgrade(db)`` and
``downgrade(db)`` (and, when rolling it back can refuse or lose data,
``before_downgrade(db)``). Each function reads top to bottom as the SQL it
runs, through the ``Db`` handle of ``live_table.py``.

Every statement is idempotent, so a run that fails or is interrupted part-way
is finished by running it again, or removed by its downgrade; the error line
says both commands.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import psycopg

from errors import first_line
from migrations.live_table import Db, MigrationError, Refused, Run

__all__ = ["Db", "MigrationError", "Refused", "Run"]  # serve.py and the scripts' runner use them

# Arbitrary but fixed: every migration run of this project takes this key.
ADVISORY_LOCK_KEY = 7_140_203_001
SCRIPTS_DIR = Path(__file__).resolve().parent


def label(migration: ModuleType) -> str:
    """Return e.g. ``003 add_call_sid_constraints``."""
    return f"{migration.VERSION:03d} {migration.NAME}"


def script(migration: ModuleType) -> str:
    """Return the command that runs this migration's script, as the operator types it."""
    return f".venv/bin/python migrations/{migration.VERSION:03d}_{migration.NAME}.py"


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
