"""See and move the whole migration chain.

    python migrations/migrate.py status        what is applied, what is pending
    python migrations/migrate.py up [N]        apply the next N pending (default: all)
    python migrations/migrate.py down [N]      roll back the last N applied (default: 1)
    python migrations/migrate.py sql [--out DIR]   print every step's SQL (for review and
                                                   squawk), or write one file per migration

Each step runs exactly as the numbered script would, under the same advisory lock.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import sys
from pathlib import Path

import psycopg

from migrations.kit import (
    Locked,
    MigrationError,
    Run,
    applied_versions,
    connect,
    database_url,
    downgrade,
    load_chain,
    one_line,
    upgrade,
)


def status(url: str, run: Run) -> None:
    """Print one line per migration: applied or pending."""
    chain = load_chain()
    conn = connect(url)
    try:
        applied = applied_versions(conn)
    finally:
        conn.close()
    for migration in chain:
        run.say(f"{migration.label}: {'applied' if migration.version in applied else 'pending'}")


def move(url: str, direction: str, count: int | None, run: Run) -> int:
    """Apply the next ``count`` pending migrations, or roll back the last ``count``."""
    chain = load_chain()
    conn = connect(url)
    run.moved = 0
    try:
        with Locked(conn):
            applied = applied_versions(conn)
            if direction == "up":
                todo = [m for m in chain if m.version not in applied]
                for migration in todo[: count if count is not None else len(todo)]:
                    run.moved += upgrade(conn, migration, run)
            else:
                todo = [m for m in reversed(chain) if m.version in applied]
                for migration in todo[: count if count is not None else 1]:
                    run.moved += downgrade(conn, migration, run)
    finally:
        conn.close()
    moved = run.moved
    if not moved:
        run.say(
            "nothing to do: the database is "
            + ("up to date" if direction == "up" else "at 000 or below")
        )
    return moved


def how_to_finish(command: str, count: int | None, moved: int) -> str:
    """Return what finishes an interrupted command: not itself, which would move more."""
    if command == "up" and count is None:  # all pending: the same command
        return "to finish, run `python migrations/migrate.py up`"
    if command not in ("up", "down"):
        return "run the same command again"
    left = (count or 1) - moved
    if left < 1:
        return "nothing is left to do"
    return f"to finish, run `python migrations/migrate.py {command} {left}`"


def migration_sql(migration, direction: str) -> str:
    """Return one direction of one migration as a SQL file, the way its steps run it."""
    texts = [step.sql_text() for step in getattr(migration, direction)]
    body = "\n\n".join(t if t.endswith(";") else t + ";" for t in texts if t)
    return f"-- {migration.label} {direction}\n{body}\n"


def print_sql(run: Run, out_dir: str | None) -> None:
    """Print every migration's SQL, or write one file per migration and direction."""
    if out_dir:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.sql"):  # a renamed migration must not linger
            stale.unlink()
    for migration in load_chain():
        for direction in ("upgrade", "downgrade"):
            text = migration_sql(migration, direction)
            if out_dir:
                name = f"{migration.version:03d}_{migration.name}.{direction}.sql"
                (folder / name).write_text(text)
            else:
                run.say(text)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it; one error line and exit 1 on failure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["status", "up", "down", "sql"])
    parser.add_argument("count", nargs="?", type=int, help="how many migrations to move")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--out", metavar="DIR", help="sql: write one file per migration here")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("N must be a positive number of migrations")
    run = Run()
    try:
        if args.command == "sql":
            print_sql(run, args.out)
        elif args.command == "status":
            status(database_url(args.database_url), run)
        else:
            move(database_url(args.database_url), args.command, args.count, run)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:  # the connection failed between steps: one line, not a trace
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, as the numbered scripts print it
        during = f" during {run.current}" if run.current else ""
        finish = how_to_finish(args.command, args.count, run.moved)
        print(f"error: interrupted{during}; {finish}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
