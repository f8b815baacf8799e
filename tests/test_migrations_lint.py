"""The SQL squawk reads is the SQL the steps run, and squawk accepts 001 to 004."""

import subprocess
import sys
from pathlib import Path

from test_migrations_support import ROOT, SCRIPTS

SQUAWK = str(Path(sys.executable).with_name("squawk"))  # squawk-cli, beside this Python


def write_sql(tmp_path):
    """Run ``migrate.py sql --out`` into ``tmp_path``; return the files it wrote."""
    subprocess.run(
        [sys.executable, str(ROOT / "migrations" / "migrate.py"), "sql", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return sorted(tmp_path.glob("*.sql"))


def test_migrate_sql_writes_one_file_per_migration_and_direction(tmp_path):
    names = {path.name for path in write_sql(tmp_path)}
    for script in ["000_initial_schema", *SCRIPTS]:
        assert {f"{script}.upgrade.sql", f"{script}.downgrade.sql"} <= names


def test_concurrent_index_build_is_outside_any_transaction_and_ddl_has_timeouts(tmp_path):
    write_sql(tmp_path)
    text = (tmp_path / "003_add_call_sid_constraints.upgrade.sql").read_text()
    build = text.index("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS calls_call_sid_key")
    assert text.rfind("BEGIN;", 0, build) == -1
    assert "SET LOCAL lock_timeout = '1500ms';\nSET LOCAL statement_timeout = '1h';\n" in text
    assert "ALTER TABLE calls VALIDATE CONSTRAINT calls_call_sid_check_not_null;" in text


def test_squawk_finds_nothing_unconsidered_in_001_to_004(tmp_path):
    write_sql(tmp_path)
    files = [str(tmp_path / f"{s}.{d}.sql") for s in SCRIPTS for d in ("upgrade", "downgrade")]
    result = subprocess.run(
        [SQUAWK, "--reporter", "gcc", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_squawk_would_flag_the_downgrades_without_their_considered_exceptions(tmp_path):
    write_sql(tmp_path)
    path = tmp_path / "001_add_call_sid_column.downgrade.sql"
    path.write_text(path.read_text().replace("-- squawk-ignore", "-- (removed)"))
    result = subprocess.run(
        [SQUAWK, "--reporter", "gcc", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ban-drop-column" in result.stdout
    assert "ban-drop-default" in result.stdout
