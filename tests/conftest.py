"""Shared fixtures: one real PostgreSQL per test session, migrations applied once.

Server: ``TEST_DATABASE_URL`` when given (an account that may create databases),
else a throwaway embedded server whose data is deleted at the end.

Isolation: tests that touch the service database (``database_url``, ``app``,
``client``, ``conn``) start from empty tables — every table but
``schema_migrations`` is truncated *before* each test. Truncation rather than a
rolled-back transaction because the feature under test is the order of commits
(the call row is committed before ElevenLabs is called, and the fake ElevenLabs
server checks that from its own connection). Truncating before, not after,
leaves a failed test's rows in place to look at.

Migration tests get a fresh empty database of their own from ``fresh_database_url``.
"""

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from batch_support import workers
from credentials import API_TOKEN, WEBHOOK_SECRET
from legacy_schema import create_baseline_without_record, seed_legacy_calls
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from werkzeug.serving import make_server

import embedded_db
from app import create_app
from elevenlabs.simulator import Simulator
from migrations.kit import Run, load_chain, upgrade

# A command run without DATABASE_URL finds the development database; never a
# developer's own from a test.
os.environ["EMBEDDED_PGDATA"] = str(Path(__file__).resolve().parent / "no-development-database")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    """Return a URL to a PostgreSQL server's maintenance database."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = embedded_db.start(tmp_path_factory.mktemp("pg") / "data", throwaway=True)
    yield embedded_db.url(server)
    server.cleanup()


@pytest.fixture(scope="session")
def create_database(server_url):
    """Return a factory of fresh empty databases; all are dropped at the end."""
    created = []

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_conninfo(server_url, dbname=name)

    yield create
    with psycopg.connect(server_url, autocommit=True) as admin:
        for name in created:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def cut_off_database(server_url):
    """Return ``cut(url, refuse_new=True)``: cut a database's connections under a running app.

    With ``refuse_new`` it stays unreachable (the database is down); without, it
    is what a restart does to a pool: open connections gone, new ones welcome.
    """

    def cut(url: str, *, refuse_new: bool = True) -> None:
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(server_url, autocommit=True) as admin:
            if refuse_new:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                        sql.Identifier(name)
                    )
                )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )

    return cut


@pytest.fixture
def fresh_database_url(create_database):
    """Return the URL of a new, empty database (no migrations applied)."""
    return create_database()


@pytest.fixture
def seeded_url(fresh_database_url):
    """Return a baseline database with 300 legacy calls (some with NULL driver_id), no record."""
    create_baseline_without_record(fresh_database_url)
    seed_legacy_calls(fresh_database_url, 300)
    return fresh_database_url


@pytest.fixture(scope="session")
def migrated_database_url(create_database):
    """Return the URL of the service database, every migration applied once."""
    url = create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in load_chain():
            upgrade(conn, migration, Run(out=lambda line: None))
    return url


@pytest.fixture
def database_url(migrated_database_url):
    """Return the service database's URL, its tables emptied for this test."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        ).fetchall()
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(t[0]) for t in tables)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))
    return migrated_database_url


@pytest.fixture
def conn(database_url):
    """Return an autocommit connection to the service database, for assertions."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def app_config(database_url):
    """Return the test configuration; tests may change it before asking for ``app``."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "DB_POOL_MIN_SIZE": 1,
        "DB_POOL_MAX_SIZE": 4,
        "API_TOKENS": [API_TOKEN],
        "ELEVENLABS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ELEVENLABS_API_KEY": "xi_test_key",
        "ELEVENLABS_AGENT_ID": "agent_7f3c2d1e9b8a",
        "ELEVENLABS_PHONE_NUMBER_ID": "phnum_5b2a9c0d",
        "ELEVENLABS_BASE_URL": "http://127.0.0.1:9",  # nothing listens; tests that call set it
    }


@pytest.fixture
def app(app_config):
    """Return an app built by the factory from ``app_config``; its pool closed after."""
    application = create_app(app_config)
    yield application
    application.extensions["db_pool"].close()


@pytest.fixture
def client(app):
    """Return a test client of ``app``."""
    return app.test_client()


@pytest.fixture
def elevenlabs():
    """Return ElevenLabs' simulator on a free port, sending no webhooks; stopped after."""
    simulator = Simulator().start()
    yield simulator
    simulator.close()


@pytest.fixture
def simulator():
    """Return a simulator with one-second calls whose webhooks go to ``service``, signed."""
    sim = Simulator(webhook_secret=WEBHOOK_SECRET, call_seconds=1, hang_seconds=1.5, concurrency=2)
    yield sim.start()
    sim.close()


@pytest.fixture
def service(app_config, simulator):
    """Serve the app over HTTP against ``simulator``; return its base URL."""
    config = {**app_config, "ELEVENLABS_BASE_URL": simulator.base_url}
    app = create_app({**config, "ELEVENLABS_READ_TIMEOUT": 0.5})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    simulator.webhook_url = f"http://127.0.0.1:{server.server_port}"
    yield simulator.webhook_url
    server.shutdown()
    app.extensions["db_pool"].close()


@pytest.fixture
def auth_headers():
    """Return the bearer-token header the API accepts in tests."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def start_worker(database_url, app_config, elevenlabs):
    """Return ``start(cap)``: a ``python -m dispatch worker`` process; all stopped after."""
    started = []

    def start(cap: int = 5) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "ELEVENLABS_BASE_URL": elevenlabs.base_url,
            "ELEVENLABS_API_KEY": "xi_test_key",
            "ELEVENLABS_AGENT_ID": app_config["ELEVENLABS_AGENT_ID"],
            "ELEVENLABS_PHONE_NUMBER_ID": app_config["ELEVENLABS_PHONE_NUMBER_ID"],
            "MAX_CONCURRENT_CALLS": str(cap),
            "CALLING_WINDOW": "00:00-23:59",
            "CALLING_TIMEZONE": "UTC",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "dispatch", "worker"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
        worker.wait(timeout=10)


@pytest.fixture
def dials_the_simulator(app_config, elevenlabs):
    """Point the app at the ElevenLabs simulator: for the modules whose tests place calls."""
    app_config["ELEVENLABS_BASE_URL"] = elevenlabs.base_url


@pytest.fixture
def make_worker(database_url, app_config, elevenlabs):
    """Return ``make(cap=5)``: a dispatch worker of this process, against the simulator."""
    yield from workers(database_url, app_config, elevenlabs)


@pytest.fixture
def live_server(app):
    """Serve the app on a free local port for the test's duration; return its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()
