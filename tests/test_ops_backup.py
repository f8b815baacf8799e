"""``python -m ops backup`` writes a dump it has read back; ``restore`` brings it back."""

import re

from commands import run_module
from legacy_schema import legacy_data, query


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
