"""Real ``python -m dispatch worker`` processes on procrastinate, two at once where it matters.

The tests wait for outcomes (every entry settled, a dial received), never for a
fixed time; ElevenLabs is the local fake, and calls end by the service's webhook.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from batch_support import batch_body, dials_per_number, end_call, numbers, workers

from dispatch.rounds import run_round
from models import calls

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

ROOT = Path(__file__).resolve().parents[1]
ALL_DAY = {"start": "00:00", "end": "23:59"}
PATIENCE_SECONDS = 180  # an upper bound on a slow machine, not a speed target


def wait_for(condition, what: str) -> None:
    """Poll until ``condition()`` is true; fail naming ``what`` after PATIENCE_SECONDS."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


def test_batch_of_200_with_cap_5_never_has_more_than_5_in_flight_with_two_workers(
    app, client, conn, database_url, auth_headers, elevenlabs, start_worker
):
    samples, ended = [], queue.Queue()
    sampler = psycopg.connect(database_url, autocommit=True)
    sample_lock = threading.Lock()

    def on_dial(received) -> None:
        # Sampled at every dial, from the database: the dialled call's row is committed.
        with sample_lock:
            samples.append(
                sampler.execute(
                    "SELECT count(*) FROM calls WHERE status IN ('initiating', 'initiated')"
                ).fetchone()[0]
            )
        ended.put(received.call_sid)

    def phone_network() -> None:
        with app.test_client() as webhooks, psycopg.connect(database_url, autocommit=True) as db:
            while (call_sid := ended.get()) is not None:
                time.sleep(0.02)  # the conversation
                wait_for(lambda: calls.by_call_sid(db, call_sid).conversation_id, "an id")
                end_call(webhooks, db, call_sid)

    elevenlabs.answer(fresh_ids=True, on_request=on_dial)
    network = threading.Thread(target=phone_network, daemon=True)
    network.start()
    response = client.post(
        "/driver_data/call-batches",
        json=batch_body(numbers(200), window=ALL_DAY),
        headers=auth_headers,
    )
    batch_id = response.get_json()["batch_id"]
    start_worker(cap=5), start_worker(cap=5)
    try:
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT status FROM call_batches WHERE batch_id = %s", (batch_id,)
                ).fetchone()[0]
                == "completed"
            ),
            "the batch to complete",
        )
    finally:
        ended.put(None)
        network.join(timeout=30)
        sampler.close()
    assert len(samples) == 200
    assert max(samples) <= 5
    assert set(dials_per_number(elevenlabs).values()) == {1}


def test_worker_killed_mid_dial_is_redialled_only_once_reconciliation_finds_it_never_placed(
    client, conn, database_url, app_config, auth_headers, elevenlabs, start_worker
):
    dialled = threading.Event()
    elevenlabs.answer(fresh_ids=True, hang=True, on_request=lambda received: dialled.set())
    body = batch_body(["+14155550100"], window=ALL_DAY, redial={"busy": 3, "no-answer": 3})
    client.post("/driver_data/call-batches", json=body, headers=auth_headers)
    worker = start_worker()
    assert dialled.wait(timeout=PATIENCE_SECONDS), "the worker never dialled"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    elevenlabs.release()
    [call] = conn.execute("SELECT call_sid, status FROM calls").fetchall()
    assert call[1] == "initiating"  # perhaps placed: only reconciliation may settle it
    survivor = next(workers(database_url, app_config, elevenlabs))()
    for hours in (0, 1, 24):
        assert run_round(survivor, datetime.now(UTC) + timedelta(hours=hours)) == 0
    assert len(elevenlabs.received) == 1
    # Reconciliation finds it never placed: the driver was not called, so is dialled now.
    calls.mark_failed(conn, call[0], reason="never placed")
    conn.execute("UPDATE call_batch_entries SET updated_at = now() - interval '1 hour'")
    assert run_round(survivor, datetime.now(UTC)) == 1
    state = conn.execute("SELECT state FROM call_batch_entries").fetchone()[0]
    assert state == "in_call"
    assert len(elevenlabs.received) == 2


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DATABASE_URL": ""}, "error: no database"),
        ({"CALLING_TIMEZONE": "Mars/Olympus"}, "error: CALLING_TIMEZONE 'Mars/Olympus' is not"),
        ({"CALLING_WINDOW": "20:00-08:00"}, "error: CALLING_WINDOW: the window must start"),
        ({"MAX_CONCURRENT_CALLS": "five"}, "error: MAX_CONCURRENT_CALLS must be a number"),
        ({"ELEVENLABS_READ_TIMEOUT": "-1"}, "error: ELEVENLABS_READ_TIMEOUT must be above 0"),
    ],
    ids=["no_database", "bad_time_zone", "overnight_window", "cap_not_a_number", "bad_timeout"],
)
def test_worker_with_bad_settings_exits_with_one_line(database_url, env, line):
    finished = subprocess.run(
        [sys.executable, "-m", "dispatch", "worker"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1
    assert finished.stderr.startswith(line), finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1
