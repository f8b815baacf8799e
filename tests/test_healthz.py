"""``GET /healthz`` reports whether the database answers."""

import time

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
