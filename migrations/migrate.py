"""See and move the whole migration chain; the command line of every numbered script too.

    .venv/bin/python migrations/migrate.py status           applied and pending migrations
    .venv/bin/python migrations/migrate.py up [N]           apply the next N (default: all)
    .venv/bin/python migrations/migrate.py down [N] [--yes] roll back the last N (default: 1)
    .venv/bin/python migrations/migrate.py sql [--out DIR]  every script's SQL (squawk reads it)

A rollback first checks every migration of the range and says what data it
drops; nothing changes when one refuses. Dropping data needs --yes, with or without
a terminal: unattended (CI, cron, `ssh host cmd`) is where nobody reads the warning.
"""

if not __package__:  # run as a script, or imported by one as `migrate`: the project is importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import signal
import sys

import psycopg

import db as database
from errors import first_line
from migrations import kit
from migrations.kit import MigrationError, Refused, Run
from migrations.render import print_sql

RUNNER = ".venv/bin/python migrations/migrate.py"


def status(url: str, run: Run) -> None:
    """Print one line per migration: applied or pending."""
    chain = kit.load_chain()
    with database.connect(url, "migrations") as conn:
        applied = kit.applied_versions(conn)
    for migration in chain:
        run.say(
            f"{kit.label(migration)}: {'applied' if migration.VERSION in applied else 'pending'}"
        )


def move(url: str, direction: str, count: int | None, run: Run, *, yes: bool = True) -> int:
    """Apply the next ``count`` pending migrations, or roll back the last ``count``."""
    chain = kit.load_chain()
    with database.connect(url, "migrations") as conn:
        kit.lock(conn)
        applied = kit.applied_versions(conn)
        if direction == "up":
            todo = [m for m in chain if m.VERSION not in applied][:count]
        else:
            todo = [m for m in reversed(chain) if m.VERSION in applied][: count or 1]
            kit.check_downgrades(conn, todo, run, yes)
        for migration in todo:
            (kit.upgrade if direction == "up" else kit.downgrade)(conn, migration, run)
    if not run.done:
        run.say(f"nothing to do: the database is {'up to date' if direction == 'up' else 'at 000'}")
    return len(run.done)


def to_finish(run: Run, again: str, upgrading: bool, it: str) -> str:
    """Return the command that finishes a stopped run and, for an upgrade, the one undoing it."""
    finish = f"to finish, run `{again}`"
    if upgrading and run.current is not None:
        back = f"`{kit.script(run.current)} downgrade`"
        finish += f" once the cause is gone, or take {it} back with {back}"
    return finish


def chain_to_finish(command: str, count: int | None, run: Run, yes: bool = False) -> str:
    """Return what a stopped ``up``/``down`` did and the one command that finishes it.

    Never more than was asked: ``down 2`` stopped in its second migration says ``down 1``,
    with the ``--yes`` the stopped run was given (what is left of the range it agreed to).
    """
    moved = f"{'applied' if command == 'up' else 'rolled back'} {', '.join(run.done)}; "
    did = moved if run.done else ""
    left = None if count is None and command == "up" else (count or 1) - len(run.done)
    if left is not None and left < 1:
        return did + "nothing is left to do"
    again = f"{RUNNER} {command}{'' if left is None else f' {left}'}{' --yes' if yes else ''}"
    it = kit.label(run.current) if run.current else ""
    return did + to_finish(run, again, command == "up", it)


def say_error(line: str) -> None:
    """Print one line on stderr; a closed terminal cannot take it, and that is fine."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def guarded(action, run: Run, finish) -> int:
    """Run ``action``; whatever stops it prints one ``error:`` line and exits non-zero."""
    # A closed terminal (SIGHUP) stops the run as Ctrl-C does: cleanly, with one line.
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    try:
        action()
    except (database.DatabaseUnavailable, Refused) as exc:
        say_error(f"error: {exc}")
        return 1
    except (MigrationError, psycopg.Error) as exc:  # psycopg: the connection failed between steps
        reason = str(exc) if isinstance(exc, MigrationError) else first_line(exc)
        say_error(f"error: {reason}" + (f"; {finish()}" if run.current or run.done else ""))
        return 1
    except KeyboardInterrupt:
        during = f" during {kit.label(run.current)}" if run.current else ""
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
            try:
                return print_sql(run, args.out)
            except OSError as exc:  # a file in the way, a read-only or missing parent
                raise MigrationError(
                    f"cannot write SQL to {args.out or 'stdout'}: {exc.strerror or exc}"
                ) from None
        url = database.url_of(args.database_url)
        if args.command == "status":
            return status(url, run)
        return move(url, args.command, args.count, run, yes=args.yes)

    return guarded(action, run, lambda: chain_to_finish(args.command, args.count, run, args.yes))


def script_main() -> None:
    """Run the command line of the numbered script that is ``__main__``."""
    migration = kit.named(sys.modules["__main__"])
    parser = argparse.ArgumentParser(description=migration.__doc__)
    parser.add_argument("direction", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    parser.add_argument("--yes", action="store_true", help="downgrade: drop the data it names")
    args = parser.parse_args()
    run = Run()
    upgrading = args.direction == "upgrade"

    def action():
        with database.connect(database.url_of(args.database_url), "migrations") as conn:
            kit.lock(conn)
            if upgrading:
                return kit.upgrade(conn, migration, run)
            kit.check_downgrades(conn, [migration], run, args.yes)
            return kit.downgrade(conn, migration, run)

    def finish():
        if run.current is None:
            return "nothing changed"
        again = kit.script(migration) + ("" if upgrading else " downgrade")
        again += " --yes" if args.yes and not upgrading else ""
        return to_finish(run, again, upgrading, "it")

    raise SystemExit(guarded(action, run, finish))


if __name__ == "__main__":
    raise SystemExit(main())
