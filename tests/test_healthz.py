"""``GET /healthz`` reports whether the database answers."""

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

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
