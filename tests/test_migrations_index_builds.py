"""Concurrent index builds: they wait out older transactions instead of failing on them.

``CREATE INDEX CONCURRENTLY`` waits for every transaction older than its phases
(a report, a ``pg_dump`` backup, an open write). Those waits queue no traffic,
so the build waits (saying for whom) rather than timing out and starting over,
and a build that does fail leaves no invalid index behind.
"""

import signal
import time

import psycopg
import pytest
from legacy_schema import (
    SCRIPTS,
    create_baseline_without_record,
    query,
    read_until,
    run_ok,
    seed_legacy_calls,
    start_script,
)

from migrations.kit import Db, Run

VALIDITY = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)"


@pytest.fixture
def at_002(seeded_url):
    """Return a baseline database with 300 legacy calls, 001 and 002 applied."""
    for script in SCRIPTS[:2]:
        run_ok(seeded_url, script)
    return seeded_url


def old_snapshot(url: str) -> psycopg.Connection:
    """Return a session holding an old snapshot, as a report or pg_dump does (never on calls)."""
    session = psycopg.connect(url)
    session.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    session.execute("SELECT count(*) FROM schema_migrations").fetchone()
    return session


def test_index_build_waits_for_an_old_snapshot_names_it_and_finishes_without_rebuilding(at_002):
    with old_snapshot(at_002) as report:
        migration = start_script(at_002, SCRIPTS[2])
        out = read_until(migration, "waiting")
        time.sleep(1)  # the build keeps waiting: no lock timeout, no retry
        report.rollback()
        pid = report.info.backend_pid
    rest, err = migration.communicate(timeout=120)
    out += rest
    assert migration.returncode == 0, out + err
    assert (
        "  index calls_call_sid_key: waiting 5s for older transactions to end (writes go on "
        f"meanwhile): pid {pid} idle in transaction, transaction open " in out
    )
    assert "s: 'SELECT count(*) FROM schema_migrations'" in out
    assert out.count("  building index calls_call_sid_key concurrently (statement_timeout 2h)") == 1
    assert "lock timeout" not in out
    assert "invalid" not in out
    assert query(at_002, VALIDITY, ("calls_call_sid_key",)) == [(True,)]


def test_writes_go_on_while_a_concurrent_build_waits_for_an_open_write(at_002):
    with psycopg.connect(at_002) as writer:
        writer.execute("UPDATE calls SET status = 'completed' WHERE id = 1")  # an open write
        migration = start_script(at_002, SCRIPTS[2])
        read_until(migration, "waiting")
        with psycopg.connect(at_002, autocommit=True) as app:
            building = app.execute(
                "SELECT state, query FROM pg_stat_activity WHERE application_name = 'migrations'"
            ).fetchall()
            app.execute("SET lock_timeout = '1s'")  # a queued write would fail, not hang
            started = time.monotonic()
            app.execute("INSERT INTO calls (conversation_id) VALUES ('conv_during_build')")
            app.execute("UPDATE calls SET status = 'completed' WHERE id = 2")
            took = time.monotonic() - started
        writer.commit()
    out, err = migration.communicate(timeout=120)
    assert migration.returncode == 0, out + err
    # The build is the CONCURRENTLY statement itself (refused inside a transaction block).
    assert building == [
        (
            "active",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS calls_call_sid_key ON calls (call_sid)",
        )
    ]
    assert took < 0.5
    assert "invalid" not in out
    assert query(at_002, VALIDITY, ("calls_call_sid_key",)) == [(True,)]


def test_index_build_that_fails_drops_the_invalid_index_it_left(at_002):
    lines = []
    with (
        old_snapshot(at_002),
        psycopg.connect(at_002, autocommit=True) as conn,
        pytest.raises(psycopg.errors.QueryCanceled),
    ):
        Db(conn, Run(out=lines.append)).create_index(
            "calls_driver_id_idx",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_driver_id_idx ON calls (driver_id, id)",
            timeout="2s",
        )
    assert (
        "  building index calls_driver_id_idx failed (canceling statement due to statement "
        "timeout); dropping what it left" in lines
    )
    assert query(at_002, VALIDITY, ("calls_driver_id_idx",)) == []


def test_ctrl_c_during_a_unique_build_that_waits_exits_soon_and_prints_the_drop_it_left(
    fresh_database_url,
):
    url = fresh_database_url
    create_baseline_without_record(url)
    seed_legacy_calls(url, 300)
    run_ok(url, "migrate", "up", "12")
    with psycopg.connect(url) as report:  # pg_dump-like: an old snapshot that read the table
        report.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        report.execute("SELECT count(*) FROM transcriptions").fetchone()
        migration = start_script(url, "013_transcription_line_key")
        read_until(migration, "index transcriptions_line_key: waiting")
        migration.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = migration.communicate(timeout=60)
        took = time.monotonic() - started
    drop = "DROP INDEX CONCURRENTLY IF EXISTS transcriptions_line_key"
    assert migration.returncode == 130, out + err
    assert took < 20
    assert f"; drop it with {drop}, or run the migration again" in out
    assert err == (
        "error: interrupted during 013 transcription_line_key; to finish, run "
        "`.venv/bin/python migrations/013_transcription_line_key.py` once the cause is gone, "
        "or take it back with `.venv/bin/python migrations/013_transcription_line_key.py "
        "downgrade`\n"
    )
    assert query(url, VALIDITY, ("transcriptions_line_key",)) == [(False,)]
    with psycopg.connect(url, autocommit=True) as operator:
        operator.execute(drop)
    assert query(url, VALIDITY, ("transcriptions_line_key",)) == []
