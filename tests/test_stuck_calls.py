"""Calls stuck in ``initiating`` (the process died mid-call) are visible to the operator."""

import os
import subprocess
import sys
from pathlib import Path

from models import calls

ROOT = Path(__file__).resolve().parents[1]


def call_aged(conn, minutes: float, *, driver_id=7) -> str:
    call = calls.create(conn, driver_id=driver_id, phone_number="+14155550123")
    conn.execute(
        "UPDATE calls SET created_at = now() - make_interval(mins => %s) WHERE call_sid = %s",
        (minutes, call.call_sid),
    )
    return call.call_sid


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_stuck_listing_shows_an_old_initiating_call_and_not_a_fresh_one(conn, database_url):
    old = call_aged(conn, 45, driver_id=11)
    fresh = call_aged(conn, 1, driver_id=12)

    result = run_cli("stuck", "--older-than", "10", env={"DATABASE_URL": database_url})

    assert result.returncode == 0, result.stderr
    assert old in result.stdout
    assert fresh not in result.stdout
    [row] = [line for line in result.stdout.splitlines() if old in line]
    assert " 11 " in row
    assert row.rstrip().endswith("0h45m")
    assert "1 call(s) stuck" in result.stdout


def test_stuck_listing_ignores_calls_that_moved_on(conn, database_url):
    failed = call_aged(conn, 60)
    calls.mark_failed(conn, failed, reason="refused")
    initiated = call_aged(conn, 60)
    calls.mark_initiated(
        conn, initiated, conversation_id="conv_x", twilio_call_sid=None, api_called_at=None
    )

    result = run_cli("stuck", "--database-url", database_url)

    assert result.returncode == 0, result.stderr
    assert "no calls stuck in initiating for more than 10 minutes" in result.stdout


def test_stuck_calls_are_listed_oldest_first(conn):
    newer = call_aged(conn, 20)
    older = call_aged(conn, 90)
    call_aged(conn, 2)
    stuck = calls.stuck_initiating(conn, older_than_minutes=10)
    assert [call.call_sid for call in stuck] == [older, newer]


def test_stuck_listing_without_a_database_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "ops", "stuck"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr == "error: no database: set DATABASE_URL or pass --database-url\n"


def test_stuck_listing_with_an_unreachable_database_says_so_in_one_line():
    result = run_cli("stuck", "--database-url", "postgresql://nobody@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr


def test_stuck_listing_refuses_a_nonsense_age():
    result = run_cli("stuck", "--older-than", "soon")
    assert result.returncode == 2
    assert "not a number of minutes" in result.stderr
