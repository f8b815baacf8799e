"""``python -m ops backup`` writes a dump it has read back; ``restore`` brings it back."""

import re

import psycopg
import pytest
from commands import run_module
from legacy_schema import legacy_data, query

from migrations.kit import Run, applied_versions
from migrations.migrate import move


def test_backup_then_restore_brings_back_every_row(seeded_url, tmp_path):
    data = legacy_data(seeded_url)
    backup = run_module("ops", "backup", "--out", str(tmp_path), database_url=seeded_url)
    assert backup.returncode == 0, backup.stderr
    found = re.fullmatch(
        r"backup: (\S+\.dump) \([\d.]+ MB, 2 tables\) in [\d.]+s; "
        r"pg_restore --list reads it back\n",
        backup.stdout,
    )
    assert found, backup.stdout
    query(seeded_url, "DELETE FROM transcriptions WHERE id <= 10 RETURNING id")
    restore = run_module("ops", "restore", found[1], database_url=seeded_url)
    assert restore.returncode == 0, restore.stderr
    assert restore.stdout.startswith(f"restore: {found[1]} into database ")
    assert legacy_data(seeded_url) == data


def test_restore_of_a_file_that_is_no_dump_fails_in_one_line_and_changes_nothing(
    seeded_url, tmp_path
):
    data = legacy_data(seeded_url)
    bogus = tmp_path / "bogus.dump"
    bogus.write_text("not a dump")
    result = run_module("ops", "restore", str(bogus), database_url=seeded_url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: pg_restore failed: ")
    assert result.stderr.count("\n") == 1
    assert legacy_data(seeded_url) == data


def test_backup_without_a_database_says_so_in_one_line(tmp_path):
    result = run_module("ops", "backup", "--out", str(tmp_path), database_url=None)
    assert (result.returncode, result.stderr) == (
        1,
        "error: no database: set DATABASE_URL or pass --database-url\n",
    )


def migrated_state(url: str) -> list[tuple]:
    """Return what a restore over another migration state would change: rows and record."""
    return query(url, "SELECT id, call_sid, conversation_id FROM calls ORDER BY id") + query(
        url, "SELECT version FROM schema_migrations ORDER BY version"
    )


@pytest.mark.parametrize("applied", [4, 13])  # 001-004 restored "cleanly"; 005+ failed in FKs
def test_restoring_the_pre_migration_backup_over_a_migrated_database_is_refused_first(
    seeded_url, tmp_path, applied
):
    backup = run_module("ops", "backup", "--out", str(tmp_path), database_url=seeded_url)
    assert backup.returncode == 0, backup.stderr
    dump = backup.stdout.split()[1]
    quiet = Run(out=lambda line: None)
    move(seeded_url, "up", applied, quiet)
    before = migrated_state(seeded_url)

    refused = run_module("ops", "restore", dump, database_url=seeded_url)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: the dump is at migration 000 (taken before 001), the database at {applied:03d}: "
        "bring the database to the dump's state first with "
        f"`.venv/bin/python migrations/migrate.py down {applied}`, then restore; nothing changed\n"
    )
    assert migrated_state(seeded_url) == before

    move(seeded_url, "down", applied, quiet, yes=True)  # the database now at the dump's state
    restored = run_module("ops", "restore", dump, database_url=seeded_url)
    assert restored.returncode == 0, restored.stderr
    assert applied_versions_of(seeded_url) == {0}


def applied_versions_of(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return applied_versions(conn)


def test_a_backup_of_a_migrated_database_restores_over_the_same_state(seeded_url, tmp_path):
    move(seeded_url, "up", 4, Run(out=lambda line: None))
    backup = run_module("ops", "backup", "--out", str(tmp_path), database_url=seeded_url)
    assert backup.returncode == 0, backup.stderr
    before = migrated_state(seeded_url)
    query(seeded_url, "DELETE FROM transcriptions WHERE id <= 10 RETURNING id")
    restored = run_module("ops", "restore", backup.stdout.split()[1], database_url=seeded_url)
    assert restored.returncode == 0, restored.stderr
    assert migrated_state(seeded_url) == before


def test_backup_to_a_folder_that_does_not_exist_is_refused_in_one_line(seeded_url, tmp_path):
    typo = tmp_path / "backup" / "call-sid"
    result = run_module("ops", "backup", "--out", str(typo), database_url=seeded_url)
    assert (result.returncode, result.stderr) == (
        1,
        f"error: no folder {typo}: create it first (a mistyped --out would hide the backup)\n",
    )
    assert not (tmp_path / "backup").exists()
