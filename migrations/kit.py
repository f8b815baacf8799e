"""What every migration run shares: the record, the order, the lock, the chain of scripts.

A script is a module ``NNN_name.py`` with ``upgrade(db)``, ``downgrade(db)`` and, where a
rollback can refuse or lose data, ``before_downgrade(db)``. Every statement is
idempotent, so a run that stops part-way is finished by running it again, or undone by
its downgrade.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import psycopg

from errors import first_line
from migrations.live_table import Db, MigrationError, Refused, Run

__all__ = ["Db", "MigrationError", "Refused", "Run"]  # serve.py, bench and the tests use them

ADVISORY_LOCK_KEY = 7_140_203_001  # arbitrary but fixed: every migration run takes it
RECORD = (
    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s) ON CONFLICT (version) DO NOTHING"
)


def named(migration: ModuleType) -> ModuleType:
    """Give a script its ``VERSION`` and ``NAME``, read from its file name."""
    number, migration.NAME = Path(migration.__file__).stem.split("_", 1)
    migration.VERSION = int(number)
    return migration


def label(migration: ModuleType) -> str:
    """Return e.g. ``003 add_call_sid_constraints``."""
    return f"{migration.VERSION:03d} {migration.NAME}"


def script(migration: ModuleType) -> str:
    """Return the command that runs this migration's script, as the operator types it."""
    return f".venv/bin/python migrations/{migration.VERSION:03d}_{migration.NAME}.py"


def table_exists(conn, name: str) -> bool:
    """Return whether the table is visible on the search path."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def applied_versions(conn) -> set[int]:
    """Return the applied versions, counting baseline tables as 000 (read-only)."""
    versions = set()
    if table_exists(conn, "schema_migrations"):
        versions = {version for (version,) in conn.execute("SELECT version FROM schema_migrations")}
    if table_exists(conn, "calls"):  # a database from before this tooling: its tables are 000
        versions.add(0)
    return versions


def check_order(migration: ModuleType, applied: set[int], direction: str) -> None:
    """Refuse to move ``migration`` while an earlier one is missing or a later one applied."""
    missing = [v for v in range(migration.VERSION) if v not in applied]
    later = sorted((v for v in applied if v > migration.VERSION), reverse=True)
    if direction == "upgrade" and missing:
        raise MigrationError(
            f"{label(migration)}: cannot upgrade before {missing[-1]:03d} is applied "
            f"(run migrations in order; missing: {', '.join(f'{v:03d}' for v in missing)})"
        )
    if later:
        raise MigrationError(
            f"{label(migration)}: cannot {'upgrade' if direction == 'upgrade' else 'roll back'} "
            f"while {later[0]:03d} is applied (roll back in reverse order: "
            f"{', '.join(f'{v:03d}' for v in later)} first)"
        )


def upgrade(conn, migration: ModuleType, run: Run) -> bool:
    """Apply ``migration`` unless it is applied; return whether it ran."""
    applied = applied_versions(conn)
    if migration.VERSION in applied:
        run.say(f"{label(migration)}: already applied; nothing to do")
        return False
    check_order(migration, applied, "upgrade")
    return apply(conn, migration, "upgrade", run)


def downgrade(conn, migration: ModuleType, run: Run) -> bool:
    """Roll ``migration`` back: when applied, or when a failed run of it may have left something."""
    applied = applied_versions(conn)
    if migration.VERSION not in applied and max(applied, default=-1) + 1 != migration.VERSION:
        run.say(f"{label(migration)}: not applied; nothing to roll back")
        return False
    check_order(migration, applied, "downgrade")
    if migration.VERSION not in applied:
        # Its downgrade is idempotent: it removes what a stopped upgrade left, or nothing.
        run.say(f"{label(migration)}: not applied; removing anything a stopped upgrade left")
    return apply(conn, migration, "downgrade", run)


def apply(conn, migration: ModuleType, direction: str, run: Run) -> bool:
    """Run one direction of ``migration`` and record it; a failure leaves ``run.current`` set."""
    started = time.monotonic()
    Db(conn, run).execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    if table_exists(conn, "calls") and conn.execute(RECORD, (0, "initial_schema")).rowcount:
        run.say("000 initial_schema: baseline tables found; recorded as applied")
    run.current = migration
    run.say(f"{label(migration)}: {'upgrading' if direction == 'upgrade' else 'rolling back'}")
    try:
        getattr(migration, direction)(Db(conn, run))
        if direction == "upgrade":
            conn.execute(RECORD, (migration.VERSION, migration.NAME))
        else:
            conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.VERSION,))
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


def check_downgrades(conn, migrations: list[ModuleType], run: Run, yes: bool) -> None:
    """Run every ``before_downgrade`` of a rollback first; say what it drops, go on only if yes
    (or if nothing it drops is asked about)."""
    losses = []
    for migration in migrations:
        db = Db(conn, run)
        if hasattr(migration, "before_downgrade"):
            migration.before_downgrade(db)
        losses += [(f"{label(migration)} drops {loss}", ask) for loss, ask in db.losses]
    for loss, _ in losses:
        run.say(loss)
    if any(ask for _, ask in losses) and not yes:
        raise MigrationError(
            "this rollback drops the data above; export it, then run again with --yes"
        )


def load_chain() -> list[ModuleType]:
    """Return every ``NNN_name.py`` migration module in this folder, in version order."""
    chain = []
    for path in sorted(Path(__file__).resolve().parent.glob("[0-9][0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"migrations.m{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a broken script: one line naming it, not a traceback
            raise MigrationError(f"{path.name}: cannot load: {first_line(exc)}") from None
        chain.append(named(module))
    versions = [m.VERSION for m in chain]
    if versions != list(range(len(chain))):
        raise MigrationError(f"migration files are not numbered 000..N without gaps: {versions}")
    return chain


def lock(conn: psycopg.Connection) -> None:
    """Take the project's advisory lock for this session, or refuse at once naming its holder.

    Closing the connection releases it, whatever stopped the run.
    """
    if conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]:
        return
    holder = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND ((classid::bigint << 32) | objid::bigint) = %s LIMIT 1",
        (ADVISORY_LOCK_KEY,),
    ).fetchone()
    who = f" (backend pid {holder[0]})" if holder else ""
    raise MigrationError(
        f"another migration run holds the migration lock{who}; wait for it to finish"
    )
