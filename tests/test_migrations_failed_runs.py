"""A run that stops part-way says in one line what finishes it and what takes it back.

Failures are provoked the way production meets them: a session holding a lock,
an operator cancelling a build, Ctrl-C, a closed terminal, ``| head``. Where a
failure must land between two statements, the test acts on the progress line
the migration prints there, from its own connection.
"""

import signal
import subprocess
from functools import partial

import psycopg
import pytest
from legacy_schema import (
    SCRIPTS,
    applied,
    legacy_data,
    query,
    read_until,
    run_ok,
    run_script,
    schema_dump,
    script_command,
    start_script,
)

import db
from migrations import kit, live_table, waits
from migrations.kit import MigrationError, Run, load_chain, lock
from migrations.migrate import move

CHAIN = load_chain()
CHECKS = "SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass AND contype = 'c'"
PY = ".venv/bin/python migrations"


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


def run_failing(url, version, direction, out):
    """Run a migration in this process, expect it to fail, and return its one error line."""
    with pytest.raises(MigrationError) as failure, db.connect(url, "migrations") as conn:
        lock(conn)
        getattr(kit, direction)(conn, CHAIN[version], Run(out=out))
    return str(failure.value)


def old_snapshot(url):
    """Return a session holding an old snapshot (a report, pg_dump): index builds wait for it."""
    session = psycopg.connect(url)
    session.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    session.execute("SELECT count(*) FROM schema_migrations").fetchone()
    return session


def test_003_build_cancelled_by_the_operator_is_finished_by_running_003_again(
    seeded_url, monkeypatch
):
    run_ok(seeded_url, "migrate", "up", "2")
    monkeypatch.setattr(waits, "FIRST_REPORT_SECONDS", 0.5)
    cancel = statement(
        seeded_url,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'migrations' AND query LIKE 'CREATE%%INDEX%%'",
    )
    lines = []
    with old_snapshot(seeded_url):
        out = on_line("index calls_call_sid_key: waiting", cancel, lines)
        error = run_failing(seeded_url, 3, "upgrade", out)
    assert error == (
        "003 add_call_sid_constraints: upgrade failed: canceling statement due to user request"
    )
    assert query(seeded_url, "SELECT to_regclass('calls_call_sid_key')") == [(None,)]
    assert applied(seeded_url) == [0, 1, 2]
    assert "003 add_call_sid_constraints: upgrade applied in " in run_ok(seeded_url, SCRIPTS[2])


def test_003_gives_calls_written_without_a_call_sid_since_002_one_and_finishes(seeded_url):
    run_ok(seeded_url, "migrate", "up", "2")
    query(seeded_url, "UPDATE calls SET call_sid = NULL WHERE id IN (5, 9) RETURNING id")
    out = run_ok(seeded_url, SCRIPTS[2])
    assert "  total: 2 calls backfilled in " in out
    assert query(seeded_url, "SELECT call_sid FROM calls WHERE id IN (5, 9) ORDER BY id") == [
        ("legacy_5",),
        ("legacy_9",),
    ]
    assert applied(seeded_url) == [0, 1, 2, 3]


def test_003_stopped_by_a_lock_names_the_session_and_both_commands(seeded_url, monkeypatch):
    run_ok(seeded_url, "migrate", "up", "2")
    before, data = schema_dump(seeded_url), legacy_data(seeded_url)
    monkeypatch.setattr(live_table, "MAX_LOCK_ATTEMPTS", 2)
    with psycopg.connect(seeded_url) as vacuum_like:  # SHARE UPDATE EXCLUSIVE, as VACUUM takes
        hold = partial(vacuum_like.execute, "LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
        pid = vacuum_like.info.backend_pid
        result = None
        with pytest.raises(MigrationError) as failure, db.connect(seeded_url, "migrations") as conn:
            lock(conn)
            kit.upgrade(conn, CHAIN[3], Run(out=on_line("NOT VALID", hold, [])))
        result = str(failure.value)
    assert result.startswith(
        "003 add_call_sid_constraints: upgrade failed: could not get a lock for "
        "'ALTER TABLE calls VALIDATE CONSTRAINT calls_call_sid_check_not_null' after 2 attempts "
        f"of 100ms; in the way: pid {pid} idle in transaction, transaction open "
    )
    # Its downgrade takes back what it did (idempotent, though 003 is not recorded).
    out = run_ok(seeded_url, SCRIPTS[2], "downgrade")
    assert "003 add_call_sid_constraints: not applied; removing anything a stopped" in out
    assert schema_dump(seeded_url) == before
    assert legacy_data(seeded_url) == data
    assert applied(seeded_url) == [0, 1, 2]


def test_013_stopped_between_its_copy_and_its_deletes_is_taken_back_by_its_downgrade(
    seeded_url,
):
    run_ok(seeded_url, "migrate", "up", "12")
    query(
        seeded_url,
        'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
        'SELECT conversation_id, speaker, message, "timestamp" FROM transcriptions '
        "WHERE id <= 10 RETURNING id",
    )  # lines a retried webhook stored twice
    before = query(seeded_url, "SELECT * FROM transcriptions ORDER BY id")

    def stop_before_deleting(line):  # Ctrl-C, a lost connection: the copies are in both tables
        if "batches of" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), db.connect(seeded_url, "migrations") as conn:
        kit.upgrade(conn, CHAIN[13], Run(out=stop_before_deleting))
    assert query(seeded_url, "SELECT count(*) FROM transcriptions_duplicates_013") == [(10,)]
    assert query(seeded_url, "SELECT * FROM transcriptions ORDER BY id") == before

    out = run_ok(seeded_url, "013_transcription_line_key", "downgrade")
    assert "013 transcription_line_key: not applied; removing anything a stopped" in out
    assert query(seeded_url, "SELECT * FROM transcriptions ORDER BY id") == before
    assert query(seeded_url, "SELECT to_regclass('transcriptions_duplicates_013')") == [(None,)]
    assert applied(seeded_url) == list(range(13))


def test_a_failed_upgrade_says_which_command_finishes_it_and_which_takes_it_back(seeded_url):
    run_ok(seeded_url, "migrate", "up", "2")
    # Built by an earlier run of 003 that stopped there (a waiting build would wait forever).
    statement(seeded_url, "CREATE UNIQUE INDEX calls_call_sid_key ON calls (call_sid)")()
    with psycopg.connect(seeded_url) as vacuum_like:
        vacuum_like.execute("LOCK TABLE calls IN SHARE UPDATE EXCLUSIVE MODE")
        proc = start_script(seeded_url, "migrate", "up")
        read_until(
            proc, "lock timeout (100ms) on 'ALTER TABLE calls ADD CONSTRAINT calls_call_sid_key"
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == (
        "error: interrupted during 003 add_call_sid_constraints; to finish, run "
        f"`{PY}/migrate.py up` once the cause is gone, or take 003 add_call_sid_constraints "
        f"back with `{PY}/003_add_call_sid_constraints.py downgrade`\n"
    )
    run_ok(seeded_url, "migrate", "up")
    assert applied(seeded_url) == list(range(14))


@pytest.mark.parametrize("command", [("migrate", "up"), (SCRIPTS[0],)])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_closed_terminal_during_a_lock_wait_prints_one_line(seeded_url, command, sig):
    with psycopg.connect(seeded_url) as reader:
        reader.execute("SELECT count(*) FROM calls")  # holds ACCESS SHARE: 001 waits
        migration = start_script(seeded_url, *command)
        read_until(migration, "lock timeout")
        migration.send_signal(sig)
        _, err = migration.communicate(timeout=60)
    assert migration.returncode == 130
    assert err == (
        "error: interrupted during 001 add_call_sid_column; to finish, run "
        + (
            f"`{PY}/migrate.py up` once the cause is gone, or take 001 add_call_sid_column back "
            if command[0] == "migrate"
            else f"`{PY}/001_add_call_sid_column.py` once the cause is gone, or take it back "
        )
        + f"with `{PY}/001_add_call_sid_column.py downgrade`\n"
    )
    assert applied(seeded_url) == [0]
    run_ok(seeded_url, *command)


def test_migrate_up_piped_through_head_finishes_the_run_and_says_so(seeded_url):
    spec = script_command(seeded_url, "migrate", "up")
    command = " ".join(f"'{arg}'" for arg in spec["args"]) + " | head -n 2"
    result = subprocess.run(
        ["/bin/bash", "-o", "pipefail", "-c", command], **{k: spec[k] for k in ("cwd", "env")},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.stdout.count("\n") == 2
    assert result.stderr == (
        "note: the output was closed early (a pipe); the run went on without printing\n"
    )
    assert applied(seeded_url) == list(range(14))


@pytest.mark.parametrize("yes", [(), ("--yes",)], ids=["asked", "given_yes"])
def test_migrate_down_3_interrupted_in_its_third_migration_names_the_command_that_finishes(
    seeded_url, yes
):
    run_ok(seeded_url, "migrate", "up")
    with psycopg.connect(seeded_url) as report:  # its read makes 011's index drop wait
        report.execute("SELECT count(*) FROM calls").fetchone()
        migration = start_script(seeded_url, "migrate", "down", "3", *yes)
        out = read_until(migration, "dropping index calls_in_flight_idx: waiting")
        migration.send_signal(signal.SIGINT)
        _, err = migration.communicate(timeout=60)
    assert "013 transcription_line_key: downgrade applied in " in out
    assert "012 call_hours: downgrade applied in " in out
    assert migration.returncode == 130
    assert err == (
        "error: interrupted during 011 call_batches; rolled back 013 "
        f"transcription_line_key, 012 call_hours; to finish, run `{PY}/migrate.py down 1"
        f"{' --yes' if yes else ''}`\n"  # the stopped run's agreement carries over
    )
    assert applied(seeded_url) == list(range(12))
    run_ok(seeded_url, "migrate", "down", "1", *yes)
    assert applied(seeded_url) == list(range(11))


def test_down_past_004_with_calls_without_conversation_id_changes_nothing(seeded_url):
    run_ok(seeded_url, "migrate", "up")
    query(
        seeded_url,
        "INSERT INTO calls (call_sid, status) VALUES ('cs_new', 'initiating') RETURNING id",
    )
    query(seeded_url, "UPDATE calls SET failure_reason = 'busy' WHERE id <= 3 RETURNING id")
    before, data = schema_dump(seeded_url), legacy_data(seeded_url)
    result = run_script(seeded_url, "migrate", "down", "10")
    assert result.returncode == 1
    assert result.stderr == (
        "error: cannot restore NOT NULL on calls.conversation_id: 1 calls have no "
        "conversation_id (created by the new code before ElevenLabs answered, or failed); "
        "give them a conversation_id or delete them, then run the downgrade again; "
        "nothing changed\n"
    )
    assert (schema_dump(seeded_url), legacy_data(seeded_url)) == (before, data)
    assert applied(seeded_url) == list(range(14))


def test_down_says_how_many_rows_lose_what_with_an_export_and_needs_yes(seeded_url):
    run_ok(seeded_url, "migrate", "up")
    query(seeded_url, "UPDATE calls SET failure_reason = 'busy' WHERE id <= 3 RETURNING id")
    before = schema_dump(seeded_url)
    lines = []
    with pytest.raises(MigrationError, match="drops the data above; export it, then run again"):
        move(seeded_url, "down", 9, Run(out=lines.append), yes=False)
    assert schema_dump(seeded_url) == before
    [loss] = lines
    assert loss.startswith("005 call_lifecycle drops the lifecycle columns (driver_name, ")
    assert ' of 3 calls; to keep it, export it first: psql "$DATABASE_URL" -c "\\copy (' in loss
    assert loss.endswith(") TO '/var/tmp/calls-lifecycle-005.csv' CSV HEADER\"")
    out = run_ok(seeded_url, "migrate", "down", "9", "--yes")
    assert out.startswith("005 call_lifecycle drops the lifecycle columns")
    assert applied(seeded_url) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("command", [("migrate", "down", "1"), ("011_call_batches", "downgrade")])
def test_a_rollback_run_without_a_terminal_keeps_the_suppression_list_without_yes(
    seeded_url, command
):
    run_ok(seeded_url, "migrate", "up", "11")
    query(seeded_url, "INSERT INTO suppressions (phone_number) VALUES ('+14155550100') RETURNING 1")
    before, versions = schema_dump(seeded_url), applied(seeded_url)
    # As from a deploy tool, cron or `ssh host cmd`: no terminal, nobody reads the warning.
    result = subprocess.run(
        **script_command(seeded_url, *command),
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: this rollback drops the data above; export it, then run again with --yes"
    )
    assert result.stderr.count("\n") == 1
    assert "011 call_batches drops suppressions with 1 numbers never to dial" in result.stdout
    assert (schema_dump(seeded_url), applied(seeded_url)) == (before, versions)
    assert query(seeded_url, "SELECT phone_number FROM suppressions") == [("+14155550100",)]
