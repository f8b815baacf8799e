"""Which database an ops command works on, and how it connects to it."""

import os

import psycopg
from psycopg.conninfo import conninfo_to_dict


class NoDatabase(Exception):
    """Neither ``--database-url`` nor ``DATABASE_URL`` names a database."""

    def __init__(self):
        super().__init__("no database: set DATABASE_URL or pass --database-url")


def url_of(given: str | None) -> str:
    """Return ``--database-url`` when given, else ``DATABASE_URL``; raise NoDatabase if neither."""
    url = given or os.environ.get("DATABASE_URL")
    if not url:
        raise NoDatabase
    return url


def connect(url: str, command: str) -> psycopg.Connection:
    """Connect in autocommit, named after the command in pg_stat_activity."""
    return psycopg.connect(
        url, autocommit=True, connect_timeout=10, application_name=f"ops-{command}"
    )


def describe(url: str) -> str:
    """Return where the database is, without the password."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or "local socket"
    return f"database {parts.get('dbname', '?')} on {host}:{parts.get('port', 5432)}"
