"""000 and the machinery every script shares: record, idempotence, order, the lock."""

import os
import shutil
import subprocess
import sys

import psycopg
import pytest
from legacy_schema import (
    ROOT,
    applied,
    create_baseline_without_record,
    query,
    run_ok,
    run_script,
    schema_dump,
    script_command,
)

from migrations.kit import ADVISORY_LOCK_KEY

BASELINE_COLUMNS = {
    ("calls", "id", "bigint", "NO", "nextval('calls_id_seq'::regclass)"),
    ("calls", "driver_id", "bigint", "YES", None),
    ("calls", "conversation_id", "text", "NO", None),
    ("calls", "phone_number", "text", "YES", None),
    ("calls", "status", "text", "NO", "'initiated'::text"),
    ("calls", "created_at", "timestamp with time zone", "NO", "now()"),
    ("calls", "updated_at", "timestamp with time zone", "NO", "now()"),
    ("transcriptions", "id", "bigint", "NO", "nextval('transcriptions_id_seq'::regclass)"),
    ("transcriptions", "conversation_id", "text", "NO", None),
    ("transcriptions", "speaker", "text", "NO", None),
    ("transcriptions", "message", "text", "NO", None),
    ("transcriptions", "timestamp", "timestamp with time zone", "NO", None),
    ("transcriptions", "created_at", "timestamp with time zone", "NO", "now()"),
}
BASELINE_KEYS = {
    ("calls", "p", "PRIMARY KEY (id)"),
    ("calls", "u", "UNIQUE (conversation_id)"),
    ("transcriptions", "p", "PRIMARY KEY (id)"),
    ("transcriptions", "f", "FOREIGN KEY (conversation_id) REFERENCES calls(conversation_id)"),
}


def baseline_columns(url):
    return set(
        query(
            url,
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name IN ('calls', 'transcriptions')",
        )
    )


def baseline_keys(url):
    return set(
        query(
            url,
            "SELECT conrelid::regclass::text, contype::text, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
            "AND contype IN ('p', 'u', 'f', 'c') "
            "AND conrelid::regclass::text <> 'schema_migrations'",
        )
    )


def public_tables(url):
    return {r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_000_upgrade_creates_exactly_the_baseline_schema(fresh_database_url):
    out = run_ok(fresh_database_url, "000_initial_schema")
    assert "000 initial_schema: upgrade applied" in out
    assert public_tables(fresh_database_url) == {"calls", "transcriptions", "schema_migrations"}
    assert baseline_columns(fresh_database_url) == BASELINE_COLUMNS
    assert baseline_keys(fresh_database_url) == BASELINE_KEYS
    assert applied(fresh_database_url) == [0]


def test_000_downgrade_removes_the_baseline_and_upgrade_again_restores_it(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    first = schema_dump(fresh_database_url)
    out = run_ok(fresh_database_url, "000_initial_schema", "downgrade")
    assert "000 initial_schema: downgrade applied" in out
    assert public_tables(fresh_database_url) == {"schema_migrations"}
    assert applied(fresh_database_url) == []
    run_ok(fresh_database_url, "000_initial_schema")
    assert schema_dump(fresh_database_url) == first
    assert baseline_columns(fresh_database_url) == BASELINE_COLUMNS


def test_000_downgrade_refuses_to_drop_tables_holding_calls(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO calls (driver_id, conversation_id) VALUES (7, 'conv_kept')")
    before = schema_dump(fresh_database_url)
    result = run_script(fresh_database_url, "000_initial_schema", "downgrade")
    assert result.returncode == 1
    assert result.stderr.startswith("error: calls hold rows; rolling back 000 would drop them")
    assert result.stderr.count("\n") == 1
    assert schema_dump(fresh_database_url) == before
    assert query(fresh_database_url, "SELECT conversation_id FROM calls") == [("conv_kept",)]
    assert applied(fresh_database_url) == [0]


def test_000_second_upgrade_says_already_applied_and_changes_nothing(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    before = schema_dump(fresh_database_url)
    out = run_ok(fresh_database_url, "000_initial_schema")
    assert out.strip() == "000 initial_schema: already applied; nothing to do"
    assert schema_dump(fresh_database_url) == before


def test_existing_baseline_without_schema_migrations_counts_as_000(fresh_database_url):
    create_baseline_without_record(fresh_database_url)
    status = run_ok(fresh_database_url, "migrate", "status")
    assert "000 initial_schema: applied" in status
    assert "001 add_call_sid_column: pending" in status
    out = run_ok(fresh_database_url, "001_add_call_sid_column")
    assert "000 initial_schema: baseline tables found; recorded as applied" in out
    assert applied(fresh_database_url) == [0, 1]


def test_a_run_while_another_holds_the_migration_lock_refuses_and_changes_nothing(
    fresh_database_url,
):
    run_ok(fresh_database_url, "000_initial_schema")
    before = schema_dump(fresh_database_url)
    with psycopg.connect(fresh_database_url, autocommit=True) as other_run:
        other_run.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        result = run_script(fresh_database_url, "001_add_call_sid_column")
        pid = other_run.info.backend_pid
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: another migration run holds the migration lock "
        f"(backend pid {pid}); wait for it to finish"
    )
    assert schema_dump(fresh_database_url) == before
    assert applied(fresh_database_url) == [0]


def test_two_concurrent_runs_of_one_script_never_both_apply(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    with psycopg.connect(fresh_database_url) as reader:
        # A long reader keeps the first run waiting (retrying) while it holds the lock.
        reader.execute("SELECT count(*) FROM calls")
        first = subprocess.Popen(
            **script_command(fresh_database_url, "001_add_call_sid_column"),
            stdout=subprocess.PIPE,
        )
        assert "lock timeout" in first.stdout.readline() + first.stdout.readline()
        second = run_script(fresh_database_url, "001_add_call_sid_column")
        reader.rollback()
    rest = first.communicate(timeout=60)[0]
    assert first.returncode == 0
    assert "001 add_call_sid_column: upgrade applied" in rest
    assert second.returncode == 1
    assert "another migration run holds the migration lock" in second.stderr
    assert second.stdout == ""
    assert applied(fresh_database_url) == [0, 1]


def test_upgrade_out_of_order_is_refused_naming_the_missing_step(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    before = schema_dump(fresh_database_url)
    result = run_script(fresh_database_url, "003_add_call_sid_constraints")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: 003 add_call_sid_constraints: cannot upgrade before 002 is applied "
        "(run migrations in order; missing: 001, 002)"
    )
    assert schema_dump(fresh_database_url) == before


def test_downgrade_out_of_order_is_refused_naming_what_to_roll_back_first(fresh_database_url):
    run_ok(fresh_database_url, "migrate", "up", "5")  # 000..004
    result = run_script(fresh_database_url, "002_backfill_call_sid", "downgrade")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: 002 backfill_call_sid: cannot roll back while 004 is applied "
        "(roll back in reverse order: 004, 003 first)"
    )
    assert applied(fresh_database_url) == [0, 1, 2, 3, 4]


def test_downgrade_of_what_is_not_applied_says_so_and_exits_0(fresh_database_url):
    run_ok(fresh_database_url, "000_initial_schema")
    before = schema_dump(fresh_database_url)
    out = run_ok(fresh_database_url, "002_backfill_call_sid", "downgrade")
    assert out.strip() == "002 backfill_call_sid: not applied; nothing to roll back"
    # The next one's downgrade runs (idempotent): it removes what a stopped upgrade left.
    out = run_ok(fresh_database_url, "001_add_call_sid_column", "downgrade")
    assert out.startswith(
        "001 add_call_sid_column: not applied; removing anything a stopped upgrade left\n"
    )
    assert schema_dump(fresh_database_url) == before
    assert applied(fresh_database_url) == [0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: no database: set DATABASE_URL or pass --database-url"),
        (("--database-url", "postgresql://nobody@127.0.0.1:9/none"), "error: cannot connect"),
    ],
)
def test_a_script_without_a_usable_database_prints_one_error_line(args, message):
    result = subprocess.run(
        [sys.executable, str(ROOT / "migrations" / "001_add_call_sid_column.py"), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "EMBEDDED_PGDATA": os.environ["EMBEDDED_PGDATA"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [("status",), ("up",), ("sql",)])
def test_a_numbered_script_that_cannot_be_imported_is_one_error_line_naming_it(
    fresh_database_url, tmp_path, command
):
    # A copy of the runner and its scripts, one of which imports what is not installed.
    for module in ("db.py", "errors.py", "embedded_db.py"):
        shutil.copy(ROOT / module, tmp_path)
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    with (tmp_path / "migrations" / "012_call_hours.py").open("a") as script:
        script.write("import nonexistent_pkg\n")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "migrations" / "migrate.py"), *command],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": fresh_database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        1,
        "error: 012_call_hours.py: cannot load: No module named 'nonexistent_pkg'\n",
    )
    assert query(fresh_database_url, "SELECT to_regclass('calls')") == [(None,)]
