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


def test_healthz_is_503_with_the_database_unreachable(app_config, create_database, server_url):
    url = create_database()
    name = conninfo_to_dict(url)["dbname"]
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})
    try:
        assert app.test_client().get("/healthz").status_code == 200
        # Take the database away under the running app: no new connections,
        # and the pool's existing ones cut.
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json()["error"] == "database_unavailable"
    finally:
        app.extensions["db_pool"].close()


def test_pool_replaces_connections_cut_by_a_database_restart(
    app_config, create_database, server_url
):
    url = create_database()
    name = conninfo_to_dict(url)["dbname"]
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_MIN_SIZE": 2})
    try:
        assert app.test_client().get("/healthz").status_code == 200
        # What a restart does to the pool: every open connection cut.
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        time.sleep(db.ALIVE_BYPASS_SECONDS + 0.1)  # idle: checked before being handed out
        statuses = [app.test_client().get("/healthz").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
    finally:
        app.extensions["db_pool"].close()
