"""See and move the whole migration chain; the command line of every numbered script too.

    .venv/bin/python migrations/migrate.py status           applied and pending migrations
    .venv/bin/python migrations/migrate.py up [N]           apply the next N (default: all)
    .venv/bin/python migrations/migrate.py down [N] [--yes] roll back the last N (default: 1)
    .venv/bin/python migrations/migrate.py sql [--out DIR]  every script's SQL (squawk reads it)

A rollback first checks every migration of the range and says what data it
drops; nothing changes when one refuses. On a terminal, dropping data needs --yes.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import signal
import sys
from types import ModuleType

import psycopg

import db as database
from errors import first_line
from migrations.kit import (
    Locked,
    MigrationError,
    Refused,
    Run,
    applied_versions,
    check_downgrades,
    connect,
    downgrade,
    label,
    load_chain,
    script,
    upgrade,
)
from migrations.render import print_sql

RUNNER = ".venv/bin/python migrations/migrate.py"


def status(url: str, run: Run) -> None:
    """Print one line per migration: applied or pending."""
    chain = load_chain()
    with connect(url) as conn:
        applied = applied_versions(conn)
    for migration in chain:
        run.say(f"{label(migration)}: {'applied' if migration.VERSION in applied else 'pending'}")


def move(url: str, direction: str, count: int | None, run: Run, *, yes: bool = True) -> int:
    """Apply the next ``count`` pending migrations, or roll back the last ``count``."""
    chain = load_chain()
    run.moved = 0
    with connect(url) as conn, Locked(conn):
        applied = applied_versions(conn)
        if direction == "up":
            todo = [m for m in chain if m.VERSION not in applied][:count]
        else:
            todo = [m for m in reversed(chain) if m.VERSION in applied][: count or 1]
            confirm_losses(check_downgrades(conn, todo, run), run, yes)
        for migration in todo:
            run.moved += (upgrade if direction == "up" else downgrade)(conn, migration, run)
    if not run.moved:
        run.say(f"nothing to do: the database is {'up to date' if direction == 'up' else 'at 000'}")
    return run.moved


def confirm_losses(losses: list[str], run: Run, yes: bool) -> None:
    """Say what a rollback drops; on a terminal, go on only with --yes."""
    for loss in losses:
        run.say(loss)
    if losses and not yes:
        raise MigrationError(
            "this rollback drops the data above; export it, then run again with --yes"
        )


def how_to_finish(command: str, count: int | None, run: Run) -> str:
    """Return what a stopped ``up``/``down`` did and the one command that finishes it.

    Never more than was asked: ``down 2`` stopped in its second migration says ``down 1``.
    """
    did = (
        f"{'applied' if command == 'up' else 'rolled back'} {', '.join(run.done)}; "
        if run.done
        else ""
    )
    left = None if count is None and command == "up" else (count or 1) - run.moved
    if left is not None and left < 1:
        return did + "nothing is left to do"
    finish = f"`{RUNNER} {command}{'' if left is None else f' {left}'}`"
    if command == "up" and run.current is not None:
        back = f"`{script(run.current)} downgrade`"
        return (
            f"{did}to finish, run {finish} once the cause is gone, "
            f"or take {label(run.current)} back with {back}"
        )
    return f"{did}to finish, run {finish}"


def how_to_finish_script(migration: ModuleType, direction: str, run: Run) -> str:
    """Return the commands that finish a stopped script run, or take its upgrade back."""
    again = f"`{script(migration)}{' downgrade' if direction == 'downgrade' else ''}`"
    if run.current is None:
        return "nothing changed"
    if direction == "downgrade":
        return f"to finish, run {again}"
    back = f"`{script(migration)} downgrade`"
    return f"to finish, run {again} once the cause is gone, or take it back with {back}"


def hang_up(signum, frame):
    """Stop on SIGHUP (a closed terminal) the way Ctrl-C stops: cleanly, with one line."""
    raise KeyboardInterrupt


def say_error(line: str) -> None:
    """Print one line on stderr; a closed terminal cannot take it, and that is fine."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def guarded(action, run: Run, finish) -> int:
    """Run ``action``; whatever stops it prints one ``error:`` line and exits non-zero."""
    signal.signal(signal.SIGHUP, hang_up)
    try:
        action()
    except database.NoDatabase:
        say_error("error: no database: set DATABASE_URL or pass --database-url")
        return 1
    except Refused as exc:
        say_error(f"error: {exc}")
        return 1
    except (MigrationError, psycopg.Error) as exc:  # psycopg: the connection failed between steps
        reason = str(exc) if isinstance(exc, MigrationError) else first_line(exc)
        say_error(f"error: {reason}" + (f"; {finish()}" if run.current or run.done else ""))
        return 1
    except KeyboardInterrupt:
        during = f" during {label(run.current)}" if run.current else ""
        say_error(f"error: interrupted{during}; {finish()}")
        return 130
    finally:
        if run.output_closed:
            say_error(
                "note: the output was closed early (a pipe); the run went on without printing"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the runner's command line and run it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["status", "up", "down", "sql"])
    parser.add_argument("count", nargs="?", type=int, help="how many migrations to move")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--out", metavar="DIR", help="sql: write one file per migration here")
    parser.add_argument("--yes", action="store_true", help="down: drop the data it names")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("N must be a positive number of migrations")
    run = Run()

    def action():
        if args.command == "sql":
            return print_sql(run, args.out)
        url = database.url_of(args.database_url)
        if args.command == "status":
            return status(url, run)
        return move(url, args.command, args.count, run, yes=args.yes or not sys.stdin.isatty())

    return guarded(action, run, lambda: how_to_finish(args.command, args.count, run))


def script_main(migration: ModuleType, argv: list[str] | None = None) -> int:
    """Command line of one numbered script: ``[upgrade|downgrade] [--database-url URL] [--yes]``."""
    parser = argparse.ArgumentParser(description=migration.__doc__)
    parser.add_argument("direction", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--yes", action="store_true", help="downgrade: drop the data it names")
    args = parser.parse_args(argv)
    run = Run()

    def action():
        with connect(database.url_of(args.database_url)) as conn, Locked(conn):
            if args.direction == "upgrade":
                return upgrade(conn, migration, run)
            yes = args.yes or not sys.stdin.isatty()
            confirm_losses(check_downgrades(conn, [migration], run), run, yes)
            return downgrade(conn, migration, run)

    return guarded(action, run, lambda: how_to_finish_script(migration, args.direction, run))


if __name__ == "__main__":
    raise SystemExit(main())
