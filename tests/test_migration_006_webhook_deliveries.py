"""006: the delivery log, and the unique line key built without blocking writes."""

import psycopg
import pytest
from legacy_schema import (
    create_baseline_without_record,
    legacy_writes,
    query,
    run_ok,
    seed_legacy_calls,
)

SCRIPT = "006_webhook_deliveries"


@pytest.fixture
def at_005(fresh_database_url):
    """Return a production-like database with 001..005 applied and one line per call."""
    url = fresh_database_url
    create_baseline_without_record(url)
    seed_legacy_calls(url, 50)
    run_ok(url, "migrate", "up", "5")  # 001..005; the baseline counts as 000
    assert query(url, "SELECT max(version) FROM schema_migrations") == [(5,)]
    return url


def repeat_lines(url, copies):
    """Store the first 10 calls' lines ``copies`` more times, as a retried webhook did."""
    for _ in range(copies):
        query(
            url,
            'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
            'SELECT conversation_id, speaker, message, "timestamp" FROM transcriptions '
            "WHERE id <= 10 RETURNING id",
        )


def line_key(url):
    return query(
        url,
        "SELECT indisunique, indisvalid FROM pg_index "
        "WHERE indexrelid = to_regclass('transcriptions_line_key')",
    )


def test_006_moves_duplicate_lines_aside_counts_them_and_downgrade_restores_them(at_005):
    repeat_lines(at_005, 2)
    before = query(at_005, "SELECT * FROM transcriptions ORDER BY id")
    out = run_ok(at_005, SCRIPT)
    assert "moved 20 duplicate copies of 10 transcript lines" in out
    assert query(at_005, "SELECT count(*) FROM transcriptions") == [(50,)]
    assert line_key(at_005) == [(True, True)]
    run_ok(at_005, SCRIPT, "downgrade")
    assert query(at_005, "SELECT * FROM transcriptions ORDER BY id") == before
    assert line_key(at_005) == []
    assert query(at_005, "SELECT to_regclass('webhook_deliveries')") == [(None,)]


def test_006_without_duplicates_says_so_and_a_rerun_is_a_no_op(at_005):
    out = run_ok(at_005, SCRIPT)
    assert "no duplicate transcript lines" in out
    assert "transcriptions_line_key  CREATE UNIQUE INDEX" in out
    assert run_ok(at_005, SCRIPT).strip().endswith("already applied; nothing to do")


def test_old_code_keeps_writing_after_006_and_a_repeated_line_is_refused(at_005):
    run_ok(at_005, SCRIPT)
    legacy_writes(at_005, "after_006")
    with pytest.raises(psycopg.errors.UniqueViolation, match="transcriptions_line_key"):
        repeat_lines(at_005, 1)


def test_006_rebuilds_a_key_left_invalid_by_a_failed_build(at_005):
    repeat_lines(at_005, 1)
    # A concurrent build that meets a duplicate fails and leaves an INVALID index behind.
    with (
        psycopg.connect(at_005, autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY transcriptions_line_key ON transcriptions "
            '(conversation_id, speaker, "timestamp", md5(message))'
        )
    assert line_key(at_005) == [(True, False)]
    out = run_ok(at_005, SCRIPT)
    assert "transcriptions_line_key is invalid (an earlier build failed); rebuilding" in out
    assert line_key(at_005) == [(True, True)]
