"""``GET /healthz`` reports whether the database answers."""

import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import db
from app import create_app


def test_healthz_is_200_with_the_database_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_503_with_the_database_unreachable(
    app_config, create_database, cut_off_database
):
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})
    try:
        assert app.test_client().get("/healthz").status_code == 200
        cut_off_database(url)
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json()["error"] == "database_unavailable"
    finally:
        app.extensions["db_pool"].close()


def test_pool_replaces_connections_cut_by_a_database_restart(
    app_config, create_database, cut_off_database
):
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_MIN_SIZE": 2})
    try:
        assert app.test_client().get("/healthz").status_code == 200
        cut_off_database(url, refuse_new=False)  # what a restart does to the pool
        time.sleep(db.ALIVE_BYPASS_SECONDS + 0.1)  # idle: checked before being handed out
        statuses = [app.test_client().get("/healthz").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
    finally:
        app.extensions["db_pool"].close()


def allow_connections(server_url: str, url: str) -> None:
    """Let a database cut off by ``cut_off_database`` accept connections again."""
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )


def test_healthz_answers_503_fast_while_the_database_is_down_not_after_the_pool_timeout(
    app_config, create_database, cut_off_database
):
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 10})
    try:
        cut_off_database(url)
        started = time.monotonic()
        response = app.test_client().get("/healthz")
        # The bound is the pool's 10 s timeout it must not wait for, not this machine's speed.
        assert time.monotonic() - started < 3
        assert response.status_code == 503
    finally:
        app.extensions["db_pool"].close()


def test_healthz_is_200_while_every_pooled_connection_is_busy(app_config):
    app = create_app({**app_config, "DB_POOL_MAX_SIZE": 1, "DB_POOL_TIMEOUT": 10})
    pool = app.extensions["db_pool"]
    held = pool.getconn()  # the one connection, busy with a long request
    try:
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        pool.putconn(held)
        pool.close()


def test_after_a_long_outage_requests_are_served_again_within_the_reconnect_timeout(
    app_config, database_url, cut_off_database, server_url, auth_headers
):
    url = database_url
    app = create_app({**app_config, "DB_POOL_TIMEOUT": 1})
    client = app.test_client()
    try:
        cut_off_database(url)
        # 7 s down with requests coming: psycopg_pool's own backoff would by now wait
        # 4 s, then 8 s, between attempts.
        down_until = time.monotonic() + 7
        while time.monotonic() < down_until:
            assert client.get("/driver_data/calls/cs_x", headers=auth_headers).status_code == 503
        allow_connections(server_url, url)
        back = time.monotonic()
        # A reconnection pending at the return ends within RECONNECT_SECONDS, and the next
        # request asks at once. The margin is for a slow shared machine; the bound stays
        # under the 4 s, then 8 s, of the pool's own backoff.
        bound = db.RECONNECT_SECONDS + 1.5
        while client.get("/driver_data/calls/cs_x", headers=auth_headers).status_code != 404:
            assert time.monotonic() - back < bound, f"no answer within {bound} s of the return"
    finally:
        allow_connections(server_url, url)
        app.extensions["db_pool"].close()
