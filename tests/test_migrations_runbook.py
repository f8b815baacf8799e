"""The runbook's migration and rollback commands, in its order, while the old code runs.

A production-like copy (legacy calls with gaps in their ids and NULL driver_ids,
retried transcript lines stored twice, no ``schema_migrations``) gets every
command of docs/RUNBOOK.md's Steps 1, 2b and its rollback section, run as the
operator runs them. A thread plays the old code throughout, except while the
new code alone runs (013, the contract step): it must see no error, and its
250 ms lock_timeout turns any request that waits that long behind a migration
into one.
"""

import pytest
from commands import run_module
from legacy_schema import (
    OldCode,
    applied,
    create_baseline_without_record,
    query,
    run_script,
    seed_legacy_calls,
)

EXPAND = [
    "001_add_call_sid_column",
    "002_backfill_call_sid",
    "003_add_call_sid_constraints",
    "004_make_conversation_id_nullable",
    "005_call_lifecycle",
    "006_webhook_deliveries",
    "007_call_lookup_indexes",
    "008_idempotency_keys",
    "009_call_outcomes",
    "010_procrastinate",
    "011_call_batches",
    "012_call_hours",
]

# Every stored copy of a transcript line after its first, and of how many lines.
COPIES = """
SELECT count(*), count(DISTINCT (conversation_id, speaker, "timestamp", message)) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY conversation_id, speaker, "timestamp", message ORDER BY id) AS copy
    FROM transcriptions
) AS numbered WHERE copy > 1
"""


@pytest.fixture
def production_copy(fresh_database_url):
    """Return a legacy database: 2,000 calls with id gaps, retried lines, no record."""
    url = fresh_database_url
    create_baseline_without_record(url)
    seed_legacy_calls(url, 2000)
    query(url, "DELETE FROM transcriptions WHERE conversation_id IN "
               "(SELECT conversation_id FROM calls WHERE id %% 13 = 0) RETURNING id")  # fmt: skip
    query(url, "DELETE FROM calls WHERE id %% 13 = 0 RETURNING id")
    query(
        url,
        'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
        'SELECT conversation_id, speaker, message, "timestamp" FROM transcriptions '
        "WHERE id %% 50 = 0 RETURNING id",
    )
    return url


def ok(url, *command) -> str:
    """Run a migration command as the runbook does; insist on exit 0; return its output."""
    result = run_script(url, *command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


def ops(url, *args) -> str:
    """Run ``python -m ops …``; insist on exit 0; return its output."""
    result = run_module("ops", *args, database_url=url)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def test_the_runbook_rolls_out_and_back_with_the_old_code_seeing_no_error(
    production_copy, tmp_path
):
    url = production_copy
    backup = ops(url, "backup", "--out", str(tmp_path))
    assert backup.endswith("pg_restore --list reads it back\n")
    assert ok(url, "migrate", "status").endswith("013 transcription_line_key: pending\n")
    old_code = OldCode(url)
    old_code.start()
    for script in EXPAND:
        assert f"{script[:3]} {script[4:]}: upgrade applied in " in ok(url, script)
        if script >= "004":  # 001-004 done: the pre-deploy go/no-go passes from here on
            assert ops(url, "verify", "--stage", "pre").endswith("0 FAIL -> ok\n")
    old_code.stop()  # the deploy: from here the new code alone runs
    assert (old_code.errors, old_code.requests > 0) == ([], True)
    [(copies, lines)] = query(url, COPIES)
    assert copies >= 40  # the seeded copies, and the old code's retried lines during 001-012
    out = ok(url, "013_transcription_line_key")
    assert f"    {copies} copies of {lines} lines in transcriptions_duplicates_013" in out
    assert "013 transcription_line_key: upgrade applied in " in out
    assert "none pending for this stage" in ops(url, "verify", "--stage", "post")

    # Rollback: 013 first, then the old code comes back, then the rest.
    assert "013 transcription_line_key: downgrade applied in " in ok(url, "migrate", "down", "1")
    rollback = OldCode(url)
    rollback.start()
    out = ok(url, "migrate", "down", "8", "--yes")
    assert out.splitlines()[-1].startswith("005 call_lifecycle: downgrade applied in ")
    out = ok(url, "migrate", "down", "4")
    assert "  total: " in out and " backfilled call_sids cleared in " in out
    assert out.splitlines()[-1].startswith("001 add_call_sid_column: downgrade applied in ")
    rollback.stop()
    assert (rollback.errors, rollback.requests > 0) == ([], True)
    assert applied(url) == [0]
    assert ops(url, "restore", backup.split()[1]).startswith("restore: ")
