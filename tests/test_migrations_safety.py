"""What keeps 001 to 004 safe on a live table: backfill, duplicates, invalid index, locks."""

import time

import psycopg
import pytest
from legacy_schema import (
    SCRIPTS,
    applied,
    create_baseline_without_record,
    query,
    run_ok,
    run_script,
    run_until_retry,
    schema_dump,
    seed_legacy_calls,
)

from migrations import live_table
from migrations.kit import Db, Run, load_chain, upgrade

CHECKS = "SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass AND contype = 'c'"

AUTOVACUUM_ON_CALLS = (
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
    "AND datname = current_database() AND query LIKE 'autovacuum: VACUUM%%public.calls%%'"
)

LEGACY_BACKFILL = (
    "UPDATE calls SET call_sid = 'legacy_' || id "
    "WHERE id > %(after)s AND id <= %(upto)s AND call_sid IS NULL"
)


def legacy_backfill(conn, batch_size: int, lines: list) -> None:
    """Run 002's backfill of legacy call_sids in batches of ``batch_size``, reporting each."""
    db = Db(conn, Run(out=lines.append), progress_every_seconds=0)
    db.backfill("calls", LEGACY_BACKFILL, "rows updated", batch_size)


def up_to(url, last):
    """Run the scripts 001..``last`` in order."""
    for script in SCRIPTS[:last]:
        run_ok(url, script)


def test_backfill_gives_rows_with_null_driver_id_a_call_sid(seeded_url):
    up_to(seeded_url, 2)
    rows = query(seeded_url, "SELECT id, call_sid FROM calls WHERE driver_id IS NULL")
    assert len(rows) == 42
    assert all(sid == f"legacy_{id_}" for id_, sid in rows)


def test_backfill_rerun_fills_only_what_is_still_null(seeded_url):
    up_to(seeded_url, 1)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("UPDATE calls SET call_sid = 'cs_written_by_app' WHERE id = 5")
        lines = []
        legacy_backfill(conn, 7, lines)
    assert lines[0] == "  calls: ids 1..300; batches of 7"
    progress = [line for line in lines if "rows/s" in line]
    assert len(progress) == 43  # 300 ids in batches of 7, one line each
    assert progress[0].startswith("  6 rows updated; ids up to 7 of 300 (2%); ")  # id 5 had one
    assert progress[-1].startswith("  299 rows updated; ids up to 300 of 300 (100%)")
    assert lines[-1].startswith("  total: 299 rows updated in ")
    assert query(seeded_url, "SELECT call_sid FROM calls WHERE id = 5") == [("cs_written_by_app",)]
    out = run_ok(seeded_url, SCRIPTS[1])
    assert "  total: 0 calls backfilled in " in out


def test_backfill_jumps_over_gaps_in_ids_instead_of_walking_them(seeded_url):
    up_to(seeded_url, 1)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("INSERT INTO calls (id, conversation_id) VALUES (50000000, 'conv_far')")
        conn.execute("UPDATE calls SET call_sid = NULL WHERE id = 50000000")
        lines = []
        legacy_backfill(conn, 100, lines)
    assert [line.split(";")[0] for line in lines if "rows/s" in line] == [
        "  100 rows updated",
        "  200 rows updated",
        "  300 rows updated",
        "  300 rows updated",  # the empty batch after 300, then one probe to the far id
        "  301 rows updated",
    ]
    assert query(seeded_url, "SELECT call_sid FROM calls WHERE id = 50000000") == [
        ("legacy_50000000",)
    ]


def test_backfill_downgrade_clears_only_the_values_it_wrote(seeded_url):
    up_to(seeded_url, 2)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO calls (conversation_id, call_sid) VALUES ('conv_new', 'cs_from_new_code')"
        )
        conn.execute("UPDATE calls SET call_sid = 'legacy_999999' WHERE id = 3")  # not its id
    out = run_ok(seeded_url, SCRIPTS[1], "downgrade")
    assert "  total: 299 backfilled call_sids cleared in " in out
    assert query(
        seeded_url, "SELECT id, call_sid FROM calls WHERE call_sid IS NOT NULL ORDER BY id"
    ) == [
        (3, "legacy_999999"),
        (301, "cs_from_new_code"),
    ]


def test_duplicate_call_sid_makes_003_stop_listing_it_and_change_nothing(seeded_url):
    up_to(seeded_url, 2)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("UPDATE calls SET call_sid = 'legacy_1' WHERE id = 2")
    before = schema_dump(seeded_url)
    result = run_script(seeded_url, SCRIPTS[2])
    assert result.returncode == 1
    assert result.stderr == (
        "error: duplicate call_sid values, nothing built: 'legacy_1' x2 (ids 1,2); "
        "give those calls distinct call_sids and run 003 again\n"
    )
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2]


def test_003_lists_the_first_20_duplicates_and_counts_the_rest(seeded_url):
    up_to(seeded_url, 2)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("UPDATE calls SET call_sid = 'dup_' || (id / 2) WHERE id BETWEEN 10 AND 59")
    result = run_script(seeded_url, SCRIPTS[2])
    assert result.returncode == 1
    assert result.stderr.count(" x2 (ids ") == 20
    assert "'dup_10' x2 (ids 20,21)" in result.stderr
    assert "; and 5 more; give those calls distinct call_sids" in result.stderr
    assert query(seeded_url, "SELECT to_regclass('calls_call_sid_key')") == [(None,)]


def test_003_rebuilds_an_invalid_index_left_by_a_failed_build(seeded_url):
    up_to(seeded_url, 2)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("UPDATE calls SET call_sid = 'legacy_1' WHERE id = 2")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY calls_call_sid_key ON calls (call_sid)")
        conn.execute("UPDATE calls SET call_sid = 'legacy_2' WHERE id = 2")
    validity = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'calls_call_sid_key'::regclass"
    assert query(seeded_url, validity) == [(False,)]
    out = run_ok(seeded_url, SCRIPTS[2])
    assert "  index calls_call_sid_key is invalid (an earlier build failed); dropping it" in out
    assert query(seeded_url, validity) == [(True,)]
    assert "calls_call_sid_key  UNIQUE (call_sid)" in out


def test_003_set_not_null_skips_the_table_scan(seeded_url):
    up_to(seeded_url, 2)
    messages = []
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: messages.append(notice.message_primary))
        conn.execute("SET client_min_messages = debug1")
        upgrade(conn, load_chain()[3], Run(out=lambda line: None))
    assert (
        'existing constraints on column "calls.call_sid" are sufficient to prove '
        "that it does not contain nulls" in messages
    )
    assert query(
        seeded_url,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'calls'::regclass AND contype = 'c'",
    ) == [(0,)]


def test_004_downgrade_meeting_a_null_at_validate_is_finished_by_running_it_again(seeded_url):
    up_to(seeded_url, 4)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        # New code wrote a call without conversation_id after the downgrade's check passed.
        conn.execute("INSERT INTO calls (call_sid, status) VALUES ('cs_late', 'initiating')")
        with pytest.raises(psycopg.errors.CheckViolation):
            load_chain()[4].downgrade(Db(conn, Run(out=lambda line: None)))
    # Its NOT VALID check stays; old code (back by now) always writes conversation_id.
    assert query(seeded_url, CHECKS) == [("calls_conversation_id_check_not_null",)]
    assert applied(seeded_url) == [0, 1, 2, 3, 4]
    query(seeded_url, "DELETE FROM calls WHERE call_sid = 'cs_late' RETURNING id")
    out = run_ok(seeded_url, SCRIPTS[3], "downgrade")
    assert "004 make_conversation_id_nullable: downgrade applied in " in out
    assert query(seeded_url, CHECKS) == []
    assert applied(seeded_url) == [0, 1, 2, 3]


def test_004_downgrade_with_a_null_conversation_id_refuses_and_changes_nothing(seeded_url):
    up_to(seeded_url, 4)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("INSERT INTO calls (call_sid, status) VALUES ('cs_new_code', 'initiating')")
    before = schema_dump(seeded_url)
    result = run_script(seeded_url, SCRIPTS[3], "downgrade")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: cannot restore NOT NULL on calls.conversation_id: 1 calls have no conversation_id"
    )
    assert result.stderr.count("\n") == 1
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2, 3, 4]


def test_ddl_waiting_on_a_lock_times_out_retries_and_then_succeeds(seeded_url):
    with psycopg.connect(seeded_url) as blocker:
        blocker.execute("SELECT count(*) FROM calls")  # holds ACCESS SHARE until rollback
        pid = blocker.info.backend_pid
        code, out = run_until_retry(seeded_url, SCRIPTS[0], blocker)
    assert code == 0, out
    assert (
        "  lock timeout (100ms) on 'ALTER TABLE calls ADD COLUMN IF NOT EXISTS call_sid text', "
        f"attempt 1/20; in the way: pid {pid} idle in transaction, transaction open " in out
    )
    assert "s: 'SELECT count(*) FROM calls'; retrying in 0." in out
    assert out.rstrip().splitlines()[-1].startswith("001 add_call_sid_column: upgrade applied")
    assert applied(seeded_url) == [0, 1]


def test_001_downgrade_names_the_call_sids_clients_were_given_and_goes_on_as_the_checklist_runs_it(
    seeded_url,
):
    up_to(seeded_url, 4)
    query(
        seeded_url,
        "INSERT INTO calls (conversation_id, call_sid) VALUES ('conv_new', 'cs_from_new_code') "
        "RETURNING id",
    )
    # The checklist's rollback: each script in turn, no --yes, no terminal.
    for script in reversed(SCRIPTS):
        out = run_ok(seeded_url, script, "downgrade")
    assert out.splitlines()[0] == (
        "001 add_call_sid_column drops the call_sid of 1 calls not backfilled by 002 (what "
        'the API gave clients for them); to keep it, export it first: psql "$DATABASE_URL" '
        '-c "\\copy (SELECT id, call_sid, conversation_id FROM calls WHERE call_sid <> '
        "'legacy_' || id) TO '/var/tmp/calls-call-sid-001.csv' CSV HEADER\""
    )
    assert out.splitlines()[-1].startswith("001 add_call_sid_column: downgrade applied in ")
    assert applied(seeded_url) == [0]


@pytest.fixture
def autovacuum_running_on_calls(server_url, fresh_database_url):
    """Return a legacy database whose ``calls`` an autovacuum is slowly vacuuming right now.

    As after 002 on a large table: every row updated, and a vacuum that takes
    minutes (here: 100 ms pauses on a cost limit of 1). The server's naptime
    drops to 1 s for the test and is restored after it.
    """
    url = fresh_database_url
    create_baseline_without_record(url)
    seed_legacy_calls(url, 20_000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE calls SET (autovacuum_vacuum_threshold = 0, "
            "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, "
            "autovacuum_vacuum_cost_limit = 1)"
        )
        conn.execute("UPDATE calls SET updated_at = now()")
    with psycopg.connect(server_url, autocommit=True) as server:
        server.execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
        server.execute("SELECT pg_reload_conf()")
        try:
            deadline = time.monotonic() + 60
            while not query(url, AUTOVACUUM_ON_CALLS):
                assert time.monotonic() < deadline, "no autovacuum started on calls in 60 s"
                time.sleep(0.2)
            yield url
        finally:
            server.execute("ALTER SYSTEM RESET autovacuum_naptime")
            server.execute("SELECT pg_reload_conf()")
            query(url, AUTOVACUUM_ON_CALLS.replace("SELECT pid", "SELECT pg_cancel_backend(pid)"))


def test_ddl_behind_a_running_autovacuum_waits_past_deadlock_timeout_so_it_yields(
    autovacuum_running_on_calls, monkeypatch
):
    url = autovacuum_running_on_calls
    monkeypatch.setattr(live_table, "MAX_LOCK_ATTEMPTS", 4)  # 100 ms each would all fail
    lines = []
    with psycopg.connect(url, autocommit=True) as conn:
        upgrade(conn, load_chain()[1], Run(out=lines.append))
    retries = [line for line in lines if "lock timeout" in line]
    assert len(retries) == 1, lines
    assert "in the way: pid " in retries[0]
    assert "'autovacuum: VACUUM" in retries[0]
    assert (
        "; an autovacuum: the next attempt waits 1500ms, past deadlock_timeout (1s), "
        "so PostgreSQL cancels it; retrying in " in retries[0]
    )
    assert applied(url) == [0, 1]
