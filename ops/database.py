"""What every ops command shares: its parser, its connection, the line that stops it."""

import argparse

import psycopg
from psycopg.conninfo import conninfo_to_dict

import db


class CommandError(Exception):
    """The command cannot go on; the message is the operator's one line."""


def parser(command: str, description: str) -> argparse.ArgumentParser:
    """Return the command's parser, with the ``--database-url`` every ops command takes."""
    parser = argparse.ArgumentParser(prog=f"python -m ops {command}", description=description)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    return parser


def bounded(cast, low, high, noun: str):
    """Return an argparse type: ``noun`` (e.g. "a number of days") from ``low`` to ``high``.

    Outside its range a number would reach SQL as a confusing database error, or
    (NaN, which passes no comparison) silently turn a check off.
    """

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(
                f"{text!r} is out of range: {noun} from {low:,} to {high:,}"
            )
        return value

    return parse


def connect(url: str | None, command: str) -> psycopg.Connection:
    """Connect in autocommit to ``url`` or what ``db.url_of`` finds, named ``ops-<command>``."""
    return db.connect(db.url_of(url), f"ops-{command}")


def describe(url: str) -> str:
    """Return where the database is, without the password."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or "local socket"
    return f"database {parts.get('dbname', '?')} on {host}:{parts.get('port', 5432)}"
