"""A migration that cannot finish changes nothing, says why in one line, and can be run again.

Failures are provoked the way production meets them: a write that lands while a
migration runs, a session holding a lock, Ctrl-C. Where a failure must land
between two steps, the test acts on the progress line the migration prints
there (its ``Run`` output), from its own connection.
"""

import importlib
import signal
from functools import partial

import psycopg
import pytest
from legacy_schema import (
    SCRIPTS,
    applied,
    create_baseline_without_record,
    legacy_data,
    query,
    read_until,
    run_ok,
    run_script,
    schema_dump,
    seed_legacy_calls,
    start_script,
)

from migrations import kit, waits

CONSTRAINTS = importlib.import_module("migrations.003_add_call_sid_constraints").MIGRATION
NULLABLE = importlib.import_module("migrations.004_make_conversation_id_nullable").MIGRATION
DELIVERIES = importlib.import_module("migrations.006_webhook_deliveries").MIGRATION
LOOKUP_INDEXES = importlib.import_module("migrations.007_call_lookup_indexes").MIGRATION
CHECKS = "SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass AND contype = 'c'"


def on_line(marker, action, lines):
    """Return a ``Run`` output that records each line and calls ``action`` on ``marker``."""

    def out(line):
        lines.append(line)
        if marker in line:
            action()

    return out


def statement(url, sql, params=()):
    """Return an action that runs one statement on a connection of its own (another client)."""

    def act():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql, params)

    return act


def run_failing(url, migration, direction, out):
    """Run a migration in this process, expect it to fail, and return its one error line."""
    with pytest.raises(kit.MigrationError) as failure:
        kit.run_migration(url, migration, direction, kit.Run(out=out))
    return str(failure.value)


def cancel_build(url):
    """Return an action that cancels the migration's running index build, as an operator does."""
    return statement(
        url,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'migrations' AND query LIKE 'CREATE%%INDEX%%'",
    )


def old_snapshot(url):
    """Return a session holding an old snapshot (a report, pg_dump): index builds wait for it."""
    session = psycopg.connect(url)
    session.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    session.execute("SELECT count(*) FROM schema_migrations").fetchone()
    return session


def test_007_failing_after_skipping_an_index_made_by_hand_keeps_that_index(seeded_url, monkeypatch):
    run_ok(seeded_url, "migrate", "up", "6")
    statement(seeded_url, "CREATE INDEX calls_driver_id_idx ON calls (driver_id, id)")()
    before = schema_dump(seeded_url)
    monkeypatch.setattr(waits, "FIRST_REPORT_SECONDS", 0.5)
    lines = []
    with old_snapshot(seeded_url):
        cancel = on_line(
            "index calls_initiating_created_at_idx: waiting", cancel_build(seeded_url), lines
        )
        error = run_failing(seeded_url, LOOKUP_INDEXES, "upgrade", cancel)
    assert "  index calls_driver_id_idx exists and is valid" in lines
    assert (
        error == "007 call_lookup_indexes: upgrade failed: canceling statement due to user request"
    )
    assert not [line for line in lines if "undoing" in line]
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5, 6]


def test_003_index_build_failing_with_no_call_sid_to_fill_runs_no_undo(seeded_url, monkeypatch):
    run_ok(seeded_url, "migrate", "up", "2")
    before = schema_dump(seeded_url)
    monkeypatch.setattr(waits, "FIRST_REPORT_SECONDS", 0.5)
    lines = []
    with old_snapshot(seeded_url):
        cancel = on_line("index calls_call_sid_key: waiting", cancel_build(seeded_url), lines)
        error = run_failing(seeded_url, CONSTRAINTS, "upgrade", cancel)
    assert error == (
        "003 add_call_sid_constraints: upgrade failed: canceling statement due to user request"
    )
    assert "  building index calls_call_sid_key failed (" in "\n".join(lines)
    assert not [line for line in lines if "undoing" in line or "ALTER" in line]
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2]


def test_006_undo_keeps_a_line_key_made_by_hand_before_the_run(seeded_url, monkeypatch):
    run_ok(seeded_url, "migrate", "up", "5")
    statement(
        seeded_url,
        "CREATE UNIQUE INDEX transcriptions_line_key "
        'ON transcriptions (conversation_id, speaker, "timestamp", md5(message))',
    )()
    before = schema_dump(seeded_url)
    monkeypatch.setattr(waits, "FIRST_REPORT_SECONDS", 0.5)
    lines = []
    with old_snapshot(seeded_url):
        cancel = on_line(
            "index calls_twilio_call_sid_idx: waiting", cancel_build(seeded_url), lines
        )
        error = run_failing(seeded_url, DELIVERIES, "upgrade", cancel)
    assert error.endswith("; undone, the schema is as it was")
    assert "  index transcriptions_line_key existed before this run; kept" in lines
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5]


def test_003_undo_builds_again_an_index_made_before_the_run_that_its_downgrade_dropped(
    seeded_url,
):
    run_ok(seeded_url, "migrate", "up", "2")
    # Left by an earlier 003 run stopped right after its build: valid, no constraint yet.
    statement(seeded_url, "CREATE UNIQUE INDEX calls_call_sid_key ON calls (call_sid)")()
    before = schema_dump(seeded_url)
    lines = []
    # Old code writes a call without call_sid after the fill: NOT NULL fails, the run is undone,
    # and its downgrade's DROP CONSTRAINT takes the index the run attached to it.
    null_call = statement(
        seeded_url, "INSERT INTO calls (conversation_id, call_sid) VALUES ('conv_x', NULL)"
    )
    error = run_failing(
        seeded_url,
        CONSTRAINTS,
        "upgrade",
        on_line("index calls_call_sid_key exists and is valid", null_call, lines),
    )
    statement(seeded_url, "DELETE FROM calls WHERE conversation_id = 'conv_x'")()
    assert "  index calls_call_sid_key existed before this run; building it again" in lines
    assert error.endswith("undone, the schema is as it was")
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2]


def test_003_gives_calls_written_without_a_call_sid_since_002_one_and_finishes(seeded_url):
    run_ok(seeded_url, "migrate", "up", "2")
    query(seeded_url, "UPDATE calls SET call_sid = NULL WHERE id IN (5, 9) RETURNING id")
    out = run_ok(seeded_url, SCRIPTS[2])
    assert "  2 calls have no call_sid (written since 002); filling as 002 does" in out
    assert "  total: 2 calls backfilled in " in out
    assert query(seeded_url, "SELECT call_sid FROM calls WHERE id IN (5, 9) ORDER BY id") == [
        ("legacy_5",),
        ("legacy_9",),
    ]
    assert applied(seeded_url) == [0, 1, 2, 3]


def test_004_downgrade_whose_validate_cannot_get_its_lock_drops_its_check(seeded_url, monkeypatch):
    run_ok(seeded_url, "migrate", "up", "4")
    before = schema_dump(seeded_url)
    monkeypatch.setattr(kit, "MAX_LOCK_ATTEMPTS", 2)
    with psycopg.connect(seeded_url) as vacuum_like:  # SHARE UPDATE EXCLUSIVE, as VACUUM takes

        def out(line):
            """Lock VALIDATE out once the check is added; let the check's DROP through."""
            if "NOT VALID; validating" in line:
                vacuum_like.execute("LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
            if "dropping calls_conversation_id_check_not_null" in line:
                vacuum_like.rollback()

        error = run_failing(seeded_url, NULLABLE, "downgrade", out)
    assert error.startswith(
        "004 make_conversation_id_nullable: downgrade failed: could not get a lock for "
        "'ALTER TABLE calls VALIDATE CONSTRAINT calls_conversation_id_check_not_null' "
        "after 2 attempts"
    )
    assert query(seeded_url, CHECKS) == []
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2, 3, 4]
    query(seeded_url, "INSERT INTO calls (status) VALUES ('initiating') RETURNING id")  # new code


def test_a_check_that_cannot_be_dropped_either_is_named_with_the_sql_that_drops_it(
    seeded_url, monkeypatch
):
    run_ok(seeded_url, "migrate", "up", "4")
    monkeypatch.setattr(kit, "MAX_LOCK_ATTEMPTS", 1)
    with psycopg.connect(seeded_url) as vacuum_like:
        hold = partial(vacuum_like.execute, "LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
        error = run_failing(seeded_url, NULLABLE, "downgrade", on_line("NOT VALID;", hold, []))
    assert "its check calls_conversation_id_check_not_null is left (could not get a lock" in error
    assert error.endswith(
        "it rejects rows with a NULL conversation_id until dropped: "
        "ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_conversation_id_check_not_null"
    )
    statement(
        seeded_url,
        "ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_conversation_id_check_not_null",
    )()
    assert "004 make_conversation_id_nullable: downgrade applied in " in run_ok(
        seeded_url, SCRIPTS[3], "downgrade"
    )


def test_003_failing_at_validation_is_undone_and_the_rollback_chain_still_works(seeded_url):
    run_ok(seeded_url, "migrate", "up", "2")
    before, data = schema_dump(seeded_url), legacy_data(seeded_url)
    lines = []
    # A write that empties a call_sid after 003's checks, while its index builds.
    empty_one = statement(seeded_url, "UPDATE calls SET call_sid = NULL WHERE id = 7")
    error = run_failing(
        seeded_url, CONSTRAINTS, "upgrade", on_line("building index", empty_one, lines)
    )
    assert error == (
        "003 add_call_sid_constraints: upgrade failed: calls.call_sid has NULL values; "
        "nothing changed; undone, the schema is as it was"
    )
    assert (
        "003 add_call_sid_constraints: upgrade failed; undoing what this run did "
        "(its downgrade steps)" in lines
    )
    assert (
        lines[-1] == "003 add_call_sid_constraints: undone; the schema is as it was before this run"
    )
    assert schema_dump(seeded_url) == before
    assert legacy_data(seeded_url) == data
    assert applied(seeded_url) == [0, 1, 2]
    run_ok(seeded_url, SCRIPTS[1], "downgrade")
    run_ok(seeded_url, SCRIPTS[0], "downgrade")
    assert applied(seeded_url) == [0]
    assert legacy_data(seeded_url) == data


def test_006_failing_at_its_line_key_build_is_undone_and_puts_duplicate_lines_back(seeded_url):
    run_ok(seeded_url, "migrate", "up", "5")
    copy_line = (
        'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
        'SELECT conversation_id, speaker, message, "timestamp" FROM transcriptions '
        "WHERE id <= %s ORDER BY id RETURNING id"
    )
    query(seeded_url, copy_line, (3,))  # old code stored three retried webhooks twice
    before = schema_dump(seeded_url)
    # Old code stores one more retried line while the key builds: the build fails.
    late_copy = statement(seeded_url, copy_line, (1,))
    lines = []
    error = run_failing(
        seeded_url,
        DELIVERIES,
        "upgrade",
        on_line("building index transcriptions_line_key concurrently", late_copy, lines),
    )
    assert error.startswith(
        "006 webhook_deliveries: upgrade failed: a duplicate transcript line arrived"
    )
    assert error.endswith("; undone, the schema is as it was")
    assert "  moved 3 duplicate copies of 3 transcript lines to transcriptions_duplicates_006" in (
        "\n".join(lines)
    )
    assert "  moved 3 duplicate transcript lines back into transcriptions" in lines
    assert schema_dump(seeded_url) == before
    assert query(seeded_url, "SELECT count(*) FROM transcriptions") == [(300 + 3 + 1,)]
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5]
    run_ok(seeded_url, "migrate", "down", "5")
    assert applied(seeded_url) == [0]


def test_a_failed_upgrade_whose_undo_fails_says_what_is_left_and_downgrade_partial_removes_it(
    seeded_url, monkeypatch
):
    run_ok(seeded_url, "migrate", "up", "2")
    before = schema_dump(seeded_url)
    monkeypatch.setattr(kit, "MAX_LOCK_ATTEMPTS", 1)
    with psycopg.connect(seeded_url) as vacuum_like:
        hold = partial(vacuum_like.execute, "LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
        error = run_failing(seeded_url, CONSTRAINTS, "upgrade", on_line("NOT VALID;", hold, []))
    assert "; undoing it failed too (003 add_call_sid_constraints: downgrade failed: " in error
    assert (
        "left behind: added: constraint calls_call_sid_check_not_null on calls: "
        "CHECK ((call_sid IS NOT NULL)) NOT VALID; "
        "constraint calls_call_sid_key on calls: UNIQUE (call_sid); index calls_call_sid_key; "
    ) in error
    assert error.endswith(
        "remove it with `python migrations/003_add_call_sid_constraints.py downgrade --partial` "
        "(or finish the upgrade by running the script again)"
    )
    out = run_ok(seeded_url, SCRIPTS[2], "downgrade", "--partial")
    assert "003 add_call_sid_constraints: not applied; removing what a failed upgrade left" in out
    assert schema_dump(seeded_url) == before
    assert applied(seeded_url) == [0, 1, 2]


def test_downgrade_partial_of_an_applied_migration_is_refused_and_keeps_its_columns(seeded_url):
    run_ok(seeded_url, "migrate", "up", "5")
    query(seeded_url, "UPDATE calls SET failure_reason = 'timeout' WHERE id <= 10 RETURNING id")
    before = schema_dump(seeded_url)
    result = run_script(seeded_url, "005_call_lifecycle", "downgrade", "--partial")
    assert result.returncode == 1
    assert result.stderr == (
        "error: 005 is applied; --partial is only for a failed upgrade; use plain downgrade\n"
    )
    assert schema_dump(seeded_url) == before
    assert query(seeded_url, "SELECT count(failure_reason) FROM calls") == [(10,)]
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("command", [("migrate", "up"), (SCRIPTS[0],)])
def test_ctrl_c_during_a_lock_wait_prints_one_line_and_exits_130(seeded_url, command):
    with psycopg.connect(seeded_url) as reader:
        reader.execute("SELECT count(*) FROM calls")  # holds ACCESS SHARE: 001 waits
        migration = start_script(seeded_url, *command)
        read_until(migration, "lock timeout")
        migration.send_signal(signal.SIGINT)
        _, err = migration.communicate(timeout=60)
    assert migration.returncode == 130
    assert err == (
        "error: interrupted during 001 add_call_sid_column; to finish, run "
        "`python migrations/migrate.py up`\n"
        if command[0] == "migrate"
        else "error: 001 add_call_sid_column: interrupted; run it again to finish, or remove "
        "what it did with `python migrations/001_add_call_sid_column.py downgrade --partial`\n"
    )
    assert applied(seeded_url) == [0]
    run_ok(seeded_url, *command)


def test_migrate_down_2_interrupted_in_its_second_migration_names_the_command_that_finishes(
    seeded_url,
):
    run_ok(seeded_url, "migrate", "up", "7")
    with psycopg.connect(seeded_url) as report:  # its read makes 006's index drop wait
        report.execute("SELECT count(*) FROM transcriptions").fetchone()
        migration = start_script(seeded_url, "migrate", "down", "2")
        out = read_until(migration, "dropping index transcriptions_line_key: waiting")
        migration.send_signal(signal.SIGINT)
        _, err = migration.communicate(timeout=60)
    assert "007 call_lookup_indexes: downgrade applied in " in out
    assert migration.returncode == 130
    assert err == (
        "error: interrupted during 006 webhook_deliveries; to finish, run "
        "`python migrations/migrate.py down 1`\n"
    )
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5, 6]
    run_ok(seeded_url, "migrate", "down", "1")
    assert applied(seeded_url) == [0, 1, 2, 3, 4, 5]


def test_a_failed_upgrade_in_a_database_whose_tables_are_not_in_public_says_what_is_left(
    fresh_database_url, monkeypatch
):
    url = fresh_database_url
    statement(url, "CREATE SCHEMA app")()
    statement(
        url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET search_path = app', "
        "current_database()); END $$",
    )()
    create_baseline_without_record(url)
    seed_legacy_calls(url, 300)
    run_ok(url, "migrate", "up", "2")
    monkeypatch.setattr(kit, "MAX_LOCK_ATTEMPTS", 1)
    with psycopg.connect(url) as vacuum_like:
        hold = partial(vacuum_like.execute, "LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
        error = run_failing(url, CONSTRAINTS, "upgrade", on_line("NOT VALID;", hold, []))
    assert query(url, "SELECT to_regclass('app.calls') IS NOT NULL") == [(True,)]
    assert (
        "left behind: added: constraint calls_call_sid_check_not_null on calls: "
        "CHECK ((call_sid IS NOT NULL)) NOT VALID; "
    ) in error
