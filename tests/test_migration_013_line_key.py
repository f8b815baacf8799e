"""006 expands (the delivery log), 013 contracts (the unique line key): old code works until 013."""

import psycopg
import pytest
from legacy_schema import (
    applied,
    create_baseline_without_record,
    legacy_writes,
    query,
    run_ok,
    seed_legacy_calls,
)
from webhook_signing import post_signed

from app import create_app

SCRIPT = "013_transcription_line_key"


@pytest.fixture
def at_012(fresh_database_url):
    """Return a production-like database with 001..012 applied and one line per call."""
    url = fresh_database_url
    create_baseline_without_record(url)
    seed_legacy_calls(url, 50)
    run_ok(url, "migrate", "up", "12")  # 001..012; the baseline counts as 000
    assert applied(url) == list(range(13))
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


def test_old_code_retrying_a_line_after_006_to_012_still_succeeds(at_012):
    repeat_lines(at_012, 1)
    legacy_writes(at_012, "after_012")
    assert line_key(at_012) == []
    assert query(at_012, "SELECT count(*) FROM transcriptions") == [(50 + 10 + 1,)]


def test_013_moves_duplicate_lines_aside_counts_them_and_downgrade_restores_them(at_012):
    repeat_lines(at_012, 2)
    before = query(at_012, "SELECT * FROM transcriptions ORDER BY id")
    out = run_ok(at_012, SCRIPT)
    assert "  total: 20 duplicate copies moved aside in " in out
    assert "    20 copies of 10 lines in transcriptions_duplicates_013" in out
    assert query(at_012, "SELECT count(*) FROM transcriptions") == [(50,)]
    assert line_key(at_012) == [(True, True)]
    run_ok(at_012, SCRIPT, "downgrade")
    assert query(at_012, "SELECT * FROM transcriptions ORDER BY id") == before
    assert line_key(at_012) == []
    assert query(at_012, "SELECT to_regclass('transcriptions_duplicates_013')") == [(None,)]


def test_013_without_duplicates_says_so_and_a_rerun_is_a_no_op(at_012):
    out = run_ok(at_012, SCRIPT)
    assert "    0 copies of 0 lines in transcriptions_duplicates_013" in out
    assert run_ok(at_012, SCRIPT).strip().endswith("already applied; nothing to do")


def test_after_013_a_repeated_line_is_refused(at_012):
    run_ok(at_012, SCRIPT)
    with pytest.raises(psycopg.errors.UniqueViolation, match="transcriptions_line_key"):
        repeat_lines(at_012, 1)


def test_013_rebuilds_a_key_left_invalid_by_a_failed_build(at_012):
    repeat_lines(at_012, 1)
    # A concurrent build that meets a duplicate fails and leaves an INVALID index behind.
    with (
        psycopg.connect(at_012, autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY transcriptions_line_key ON transcriptions "
            '(conversation_id, speaker, "timestamp", md5(message))'
        )
    assert line_key(at_012) == [(True, False)]
    out = run_ok(at_012, SCRIPT)
    assert "transcriptions_line_key is invalid (an earlier build failed); dropping it" in out
    assert line_key(at_012) == [(True, True)]


def test_new_code_saves_lines_between_the_deploy_and_013(at_012, app_config):
    """The runbook deploys the new code before 013: its line insert must not need the key."""
    conversation_id = query(at_012, "SELECT conversation_id FROM calls ORDER BY id LIMIT 1")[0][0]
    app = create_app({**app_config, "DATABASE_URL": at_012})
    line = {
        "conversation_id": conversation_id,
        "speaker": "agent",
        "message": "Between the deploy and 013.",
        "timestamp": "2026-11-25T10:20:00Z",
    }
    try:
        client = app.test_client()
        answers = [post_signed(client, "/webhooks/elevenlabs/transcription", line) for _ in "12"]
    finally:
        app.extensions["db_pool"].close()

    assert [answer.status_code for answer in answers] == [200, 200]
    stored = query(
        at_012, "SELECT count(*) FROM transcriptions WHERE message = %s", (line["message"],)
    )
    assert stored == [(2,)]  # stored twice, as the old code stores a retried line, until 013
