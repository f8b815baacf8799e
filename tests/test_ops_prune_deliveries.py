"""``python -m ops prune-deliveries``: old settled deliveries go, unsettled ones stay."""

import subprocess

import psycopg
import pytest
from commands import run_module

from models import webhook_deliveries as delivery_log
from ops.prune_deliveries import prune


def record(conn, outcome: str, *, days_ago: int, replay_outcome: str | None = None) -> int:
    """Insert a delivery received ``days_ago`` days ago; return its id."""
    return conn.execute(
        """
        INSERT INTO webhook_deliveries (received_at, endpoint, signature_valid, body, body_size,
                                        outcome, http_status, replay_outcome)
        VALUES (now() - make_interval(days => %s), 'transcription', true, '{}'::bytea, 2,
                %s, 200, %s)
        RETURNING id
        """,
        (days_ago, outcome, replay_outcome),
    ).fetchone()[0]


@pytest.fixture
def deliveries(conn) -> dict[str, int]:
    """A month of deliveries in every state that matters to retention."""
    return {
        "old_accepted": record(conn, delivery_log.ACCEPTED, days_ago=40),
        "old_duplicate": record(conn, delivery_log.DUPLICATE, days_ago=40),
        "old_acknowledged": record(conn, delivery_log.ACKNOWLEDGED, days_ago=40),
        "old_bad_signature": record(conn, delivery_log.REJECTED_SIGNATURE, days_ago=40),
        "old_replayed": record(
            conn, delivery_log.UNKNOWN_CALL, days_ago=40, replay_outcome=delivery_log.ACCEPTED
        ),
        "old_unsettled": record(conn, delivery_log.UNKNOWN_CALL, days_ago=40),
        "old_failed_replay": record(
            conn,
            delivery_log.NO_CONVERSATION_ID,
            days_ago=40,
            replay_outcome=delivery_log.NO_CONVERSATION_ID,
        ),
        "new_accepted": record(conn, delivery_log.ACCEPTED, days_ago=1),
        "new_bad_signature": record(conn, delivery_log.REJECTED_SIGNATURE, days_ago=1),
    }


def remaining(conn) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM webhook_deliveries").fetchall()}


def prune_cli(url: str | None, *args: str) -> subprocess.CompletedProcess:
    return run_module("ops", "prune-deliveries", *args, database_url=url)


def test_old_settled_and_badly_signed_deliveries_go_and_unsettled_ones_stay(
    conn, deliveries, database_url
):
    result = prune_cli(database_url, "--older-than-days", "30", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert remaining(conn) == {
        deliveries["old_unsettled"],
        deliveries["old_failed_replay"],
        deliveries["new_accepted"],
        deliveries["new_bad_signature"],
    }
    assert result.stdout.splitlines()[-1] == (
        "deleted 5 deliveries older than 30 days; 2 kept (unsettled)"
    )
    assert "  deleted 2 so far" in result.stdout  # batches of 2, each its own transaction


def test_a_dry_run_counts_and_deletes_nothing(conn, deliveries):
    lines = []
    assert prune(conn, 30, batch=100, dry_run=True, out=lines.append) == 5
    assert lines == ["would delete 5 deliveries older than 30 days; 2 kept (unsettled)"]
    assert remaining(conn) == set(deliveries.values())


def test_a_row_a_replay_holds_is_skipped_not_waited_for(conn, deliveries, database_url):
    with psycopg.connect(database_url) as replay:
        replay.execute(
            "SELECT 1 FROM webhook_deliveries WHERE id = %s FOR UPDATE",
            (deliveries["old_accepted"],),
        )
        assert prune(conn, 30, batch=100, dry_run=False, out=lambda line: None) == 4
    assert deliveries["old_accepted"] in remaining(conn)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --older-than-days"),
        (
            ["--older-than-days", "0"],
            "argument --older-than-days: '0' is out of range: a number of days from 1 to 36,500",
        ),
        (
            ["--older-than-days", "99999999999", "--dry-run"],
            "'99999999999' is out of range: a number of days from 1 to 36,500",
        ),
        (
            ["--older-than-days", "30", "--batch", "0"],
            "argument --batch: '0' is out of range: a number of rows from 1 to 1,000,000",
        ),
        (
            ["--older-than-days", "30", "--batch", "99999999999999999999"],
            "'99999999999999999999' is out of range: a number of rows from 1 to 1,000,000",
        ),
        (["--older-than-days", "soon"], "argument --older-than-days: not a number of days: 'soon'"),
    ],
)
def test_bad_options_are_refused_with_exit_2(database_url, args, message):
    result = prune_cli(database_url, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_without_a_database_it_says_so_and_exits_2():
    result = prune_cli(None, "--older-than-days", "30")
    assert result.returncode == 2
    assert result.stderr == "error: no database: set DATABASE_URL or pass --database-url\n"
