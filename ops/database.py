"""How an ops command connects to its database (``db.url_of`` says which one)."""

import psycopg
from psycopg.conninfo import conninfo_to_dict


def add_argument(parser) -> None:
    """Add the ``--database-url`` option every ops command takes."""
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")


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
