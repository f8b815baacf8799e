"""The database pool: one ``psycopg_pool.ConnectionPool`` per app, and finding the database.

``get_conn()`` gives a request its connection, back in the pool when the request
ends. Autocommit: writes that stand or fall together use ``conn.transaction()``.
"""

import os
import time

import psycopg
from flask import current_app, g
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from errors import first_line

# psycopg_pool's reconnection backoff doubles (1, 2, 4, 8 s, …): giving up early
# leaves the next request to ask at once, so recovery follows it within a second.
RECONNECT_SECONDS = 2.0
# How long /healthz waits for a pooled connection before asking the server directly.
HEALTH_WAIT_SECONDS = 0.5
# A connection given back less than this long ago is taken to be alive, as HikariCP
# does: pinging on every checkout cost the webhook path a quarter of its time.
ALIVE_BYPASS_SECONDS = 0.5
# Beside class 08 (connection exception), the SQLSTATEs of a server gone: admin or
# crash shutdown, starting up. A timeout or deadlock comes from a server that is up.
_SERVER_GONE = ("57P01", "57P02", "57P03")
APPLICATION_NAME = "call-sid-service"


class DatabaseUnavailable(Exception):
    """No database is named, or it cannot be reached; the message is one line for the operator."""


def url_of(given: str | None) -> str:
    """Return ``--database-url``, else ``DATABASE_URL``, else the development one, else raise."""
    url = given or os.environ.get("DATABASE_URL")
    if not url and os.environ.get("APP_ENV", "development") == "development":
        import embedded_db

        url = embedded_db.development_url()
    if not url:
        raise DatabaseUnavailable("no database: set DATABASE_URL or pass --database-url")
    return url


def check_url(url: str) -> None:
    """Refuse a URL libpq cannot even parse, at once and in one line."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        # libpq may quote the whole URL, password included: not on the screen.
        reason = first_line(exc).replace(url, "<DATABASE_URL>")
        raise DatabaseUnavailable(f"DATABASE_URL is malformed: {reason}") from None


def connect(url: str, application_name: str, *, timeout: int = 10) -> psycopg.Connection:
    """Open an autocommit connection, or raise DatabaseUnavailable saying in one line why not."""
    check_url(url)
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=timeout, application_name=application_name
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {first_line(exc)}") from None


def open_pool(url: str, *, min_size: int, max_size: int, timeout: float) -> ConnectionPool:
    """Open a pool and wait for its first connections, so a bad URL fails at start-up."""
    check_url(url)
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True, "application_name": APPLICATION_NAME},
        # A connection broken by a database restart is replaced, not handed out.
        check=_check_if_idle,
        reconnect_timeout=RECONNECT_SECONDS,
        open=False,
        name="calls",
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout:
        pool.close()
        connect(url, APPLICATION_NAME, timeout=2).close()  # the pool names no cause; libpq does
        raise DatabaseUnavailable(
            "cannot connect to the database: no connection within the pool's timeout"
        ) from None
    return pool


def _check_if_idle(conn: psycopg.Connection) -> None:
    """Ping a connection before handing it out, unless it was in use a moment ago."""
    if time.monotonic() - getattr(conn, "_returned_at", 0.0) > ALIVE_BYPASS_SECONDS:
        ConnectionPool.check_connection(conn)


def unreachable(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """Return whether an error means the database cannot be reached at all."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    broken = conn is not None and (conn.closed or conn.broken)
    return broken or (exc.sqlstate or "").startswith("08") or exc.sqlstate in _SERVER_GONE


def ping() -> str | None:
    """Return None when the database answers, else libpq's one-line reason.

    A pool busy, or holding connections a restart killed, is no sign of a database
    down: after a short wait the server itself is asked on a fresh connection.
    """
    pool = current_app.extensions["db_pool"]
    try:
        # Kept as this request's connection: given back at teardown like any other.
        if "db_conn" not in g:  # one this request already took is asked instead
            g.db_conn = pool.getconn(timeout=HEALTH_WAIT_SECONDS)
        g.db_conn.execute("SELECT 1")
        return None
    except (psycopg.Error, PoolTimeout):
        try:
            psycopg.connect(pool.conninfo, connect_timeout=2, **pool.kwargs).close()
        except psycopg.Error as exc:
            return first_line(exc)
        return None


def init_app(app) -> None:
    """Open the app's pool (on the embedded server without DATABASE_URL), released per request."""
    config = app.config
    if not config["DATABASE_URL"]:
        import embedded_db

        server = app.extensions["embedded_postgres"] = embedded_db.start()  # lives with the app
        config["DATABASE_URL"] = embedded_db.url(server)
    app.extensions["db_pool"] = open_pool(
        config["DATABASE_URL"],
        min_size=config["DB_POOL_MIN_SIZE"],
        max_size=config["DB_POOL_MAX_SIZE"],
        timeout=config["DB_POOL_TIMEOUT"],
    )
    app.teardown_appcontext(release_conn)


def get_conn() -> psycopg.Connection:
    """Return this request's connection, taking one from the pool on first use."""
    if "db_conn" not in g:
        g.db_conn = current_app.extensions["db_pool"].getconn()
    return g.db_conn


def release_conn(_exc=None) -> None:
    """Give this request's connection back now (before a long wait on ElevenLabs), or at teardown.

    Its return is timed here, not in a pool ``reset`` callback: with one, psycopg_pool
    hands every returned connection to a worker thread (a tenth of the webhook throughput).
    """
    conn = g.pop("db_conn", None)
    if conn is not None:
        conn._returned_at = time.monotonic()
        current_app.extensions["db_pool"].putconn(conn)


def fresh_conn() -> psycopg.Connection:
    """Give back this request's broken connection and return one that works.

    After a failover every pooled connection is dead, and one used a moment ago is
    handed out unpinged: ``check()`` tests the idle ones first and discards the dead.
    """
    release_conn()
    current_app.extensions["db_pool"].check()
    return get_conn()
