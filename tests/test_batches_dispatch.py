"""The dispatch round: the cap, one call per number, windows, redial, 429 backoff, cancel.

Each test moves the clock by passing ``now``; nothing sleeps. ElevenLabs is the
local fake; calls end by the service's own post-call webhook.
"""

import time as clock
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from batch_support import (
    NOON_CHICAGO,
    batch_body,
    dials_per_number,
    end_call,
    entry_states,
    numbers,
)
from prometheus_client import REGISTRY

from dispatch import batches
from dispatch.rounds import claim, run_round
from dispatch.windows import Window, is_open, next_opening
from elevenlabs.client import ElevenLabsClient
from elevenlabs.conversations import Conversations
from elevenlabs.simulator import ERROR_429_CONCURRENCY
from ops.reconcile import reconcile

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

BATCHES = "/driver_data/call-batches"


def post_batch(client, auth_headers, body) -> str:
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["batch_id"]


def in_flight(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM calls WHERE status IN ('initiating', 'initiated')"
    ).fetchone()[0]


def open_calls(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT call_sid FROM calls WHERE status = 'initiated'")]


def test_round_never_dials_past_the_cap(client, conn, auth_headers, elevenlabs, make_worker):
    elevenlabs.answer(fresh_ids=True)
    post_batch(
        client, auth_headers, batch_body(numbers(12), window={"start": "00:00", "end": "23:59"})
    )
    worker = make_worker(cap=5)
    assert run_round(worker, NOON_CHICAGO) == 5
    assert run_round(worker, NOON_CHICAGO) == 0  # every slot taken
    assert in_flight(conn) == 5
    for call_sid in open_calls(conn)[:2]:
        end_call(client, conn, call_sid)
    assert run_round(worker, NOON_CHICAGO) == 2
    assert in_flight(conn) == 5


def test_single_calls_count_toward_the_cap(client, conn, auth_headers, elevenlabs, make_worker):
    elevenlabs.answer(fresh_ids=True)
    single = {"driver_id": 9, "phone_number": "+14155559999"}
    for _ in range(2):  # the single-call endpoint is not throttled: two to one number count two
        answer = client.post("/driver_data/call-elevenlabs", json=single, headers=auth_headers)
        assert answer.status_code == 201
    post_batch(client, auth_headers, batch_body(numbers(6)))
    assert run_round(make_worker(cap=5), NOON_CHICAGO) == 3


def test_number_with_a_call_in_flight_is_not_dialled_again(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    worker = make_worker()
    assert run_round(worker, NOON_CHICAGO) == 1
    assert run_round(worker, NOON_CHICAGO) == 0
    [call_sid] = open_calls(conn)
    end_call(client, conn, call_sid)
    assert run_round(worker, NOON_CHICAGO) == 1
    assert dials_per_number(elevenlabs) == {"+14155550100": 2}


def stale_call(conn, number: str) -> None:
    """Write a call still initiated an hour after it was created: its webhook never came."""
    conn.execute(
        "INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id, "
        "created_at) VALUES ('cs_stale', 1, %s, 'initiated', 'conv_stale', "
        "now() - interval '1 hour')",
        (number,),
    )


def test_call_open_past_call_max_minutes_no_longer_holds_a_slot(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    stale_call(conn, "+14155550999")  # past CALL_MAX_MINUTES (15 here): reconcile settles it
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    assert run_round(make_worker(cap=1), NOON_CHICAGO) == 1


def test_number_whose_call_is_open_past_call_max_minutes_is_dialled_again(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    stale_call(conn, "+14155550100")
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    assert run_round(make_worker(), NOON_CHICAGO) == 1
    assert dials_per_number(elevenlabs) == {"+14155550100": 1}


def test_busy_number_with_redial_busy_1_gets_exactly_two_attempts(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    body = batch_body(["+14155550101"], redial={"busy": 1, "spacing_minutes": 10})
    batch_id = post_batch(client, auth_headers, body)
    worker = make_worker()
    now = NOON_CHICAGO
    assert run_round(worker, now) == 1
    end_call(client, conn, open_calls(conn)[0], "busy")
    assert run_round(worker, now) == 0  # settled: redial_scheduled, not yet due
    assert entry_states(conn) == {"+14155550101": "redial_scheduled"}
    assert run_round(worker, now + timedelta(minutes=9)) == 0
    assert run_round(worker, now + timedelta(minutes=10)) == 1
    end_call(client, conn, open_calls(conn)[0], "busy")
    for minutes in (20, 60, 600):
        assert run_round(worker, now + timedelta(minutes=minutes)) == 0
    assert dials_per_number(elevenlabs) == {"+14155550101": 2}
    shown = client.get(f"{BATCHES}/{batch_id}", headers=auth_headers).get_json()
    assert shown["status"] == "completed"
    [entry] = shown["entries"]
    assert entry["state"] == "failed"
    assert [a["failure_reason"] for a in entry["attempts"]] == ["busy", "busy"]


def test_no_answer_is_redialled_per_its_own_count(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    body = batch_body(["+14155550102"], redial={"busy": 3, "no-answer": 0})
    post_batch(client, auth_headers, body)
    worker = make_worker()
    run_round(worker, NOON_CHICAGO)
    end_call(client, conn, open_calls(conn)[0], "no-answer")
    assert run_round(worker, NOON_CHICAGO + timedelta(hours=2)) == 0
    assert entry_states(conn) == {"+14155550102": "failed"}


def test_driver_whose_window_is_closed_waits_and_is_dialled_when_it_opens(
    client, conn, auth_headers, elevenlabs, make_worker
):
    # 21:00 in Chicago on the eve of the spring-forward (2027-03-14): the window is
    # closed, and it opens at 08:00 CDT = 13:00 UTC (not 14:00, as a fixed offset says).
    elevenlabs.answer(fresh_ids=True)
    evening = datetime(2027, 3, 14, 3, 0, tzinfo=UTC)
    body = batch_body(["+14155550100"], not_before=evening.isoformat())
    batch_id = post_batch(client, auth_headers, body)
    worker = make_worker()
    assert run_round(worker, evening) == 0
    shown = client.get(f"{BATCHES}/{batch_id}", headers=auth_headers).get_json()
    assert shown["counts"]["waiting_window"] == 1
    opens = datetime(2027, 3, 14, 13, 0, tzinfo=UTC)
    assert shown["entries"][0]["next_attempt_at"] == opens.isoformat()
    assert run_round(worker, opens - timedelta(seconds=1)) == 0
    assert run_round(worker, opens) == 1
    assert entry_states(conn) == {"+14155550100": "in_call"}


def test_entry_due_after_its_window_closed_waits_for_the_next_day(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    late = datetime(2027, 6, 11, 2, 0, tzinfo=UTC)  # 21:00 in Chicago
    assert run_round(make_worker(), late) == 0
    row = conn.execute("SELECT state, next_attempt_at FROM call_batch_entries").fetchone()
    assert row == ("waiting_window", datetime(2027, 6, 11, 13, 0, tzinfo=UTC))


def test_429_puts_the_entry_back_with_backoff_and_is_not_an_attempt(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(ERROR_429_CONCURRENCY, status=429)
    body = batch_body(["+14155550105"], redial={"busy": 0})
    post_batch(client, auth_headers, body)
    worker = make_worker()
    backoffs_before = REGISTRY.get_sample_value("batch_backoffs_total")
    assert run_round(worker, NOON_CHICAGO) == 1
    assert REGISTRY.get_sample_value("batch_backoffs_total") - backoffs_before == 1
    state, again, backoffs = conn.execute(
        "SELECT state, next_attempt_at, backoffs FROM call_batch_entries"
    ).fetchone()
    assert (state, backoffs) == ("queued", 1)
    assert timedelta(seconds=2.5) <= again - NOON_CHICAGO <= timedelta(seconds=5)
    assert run_round(worker, NOON_CHICAGO + timedelta(seconds=1)) == 0
    assert run_round(worker, again) == 1  # and the second wait is longer
    second = conn.execute("SELECT next_attempt_at, backoffs FROM call_batch_entries").fetchone()
    assert second[1] == 2
    assert timedelta(seconds=5) <= second[0] - again <= timedelta(seconds=10)
    elevenlabs.answer(fresh_ids=True)  # room again: the call is placed
    assert run_round(worker, second[0]) == 1
    placed = conn.execute("SELECT state, backoffs FROM call_batch_entries").fetchone()
    assert placed == ("in_call", 0)  # the next 429 of this entry waits from the start again


def test_a_429_ends_the_round_and_pauses_every_claim_until_its_backoff_ends(
    client, conn, auth_headers, elevenlabs, make_worker
):
    # Numbers ending in 5: ElevenLabs refuses every call, too_many_concurrent_requests.
    batch_id = post_batch(client, auth_headers, batch_body(numbers(300, 5)))
    worker = make_worker(cap=5)
    assert run_round(worker, NOON_CHICAGO) == 5
    # The account is over its limit: no other entry is dialled while the backoff runs.
    for seconds in (0, 1, 2):
        assert run_round(worker, NOON_CHICAGO + timedelta(seconds=seconds)) == 0
    assert len(elevenlabs.received) == 5
    [resumes] = conn.execute("SELECT max(next_attempt_at) FROM call_batch_entries").fetchone()
    assert run_round(worker, resumes - timedelta(milliseconds=1)) == 0
    assert run_round(worker, resumes) == 5
    # Shown among the entry's attempts, but never counted against its redials.
    shown = client.get(f"{BATCHES}/{batch_id}", headers=auth_headers).get_json()
    refused = [entry for entry in shown["entries"] if entry["backoffs"]]
    assert len(refused) == 10
    assert all(entry["state"] == "queued" for entry in refused)
    assert "too_many_concurrent_requests" in refused[0]["attempts"][0]["failure_reason"]


def test_entry_whose_call_is_still_initiating_is_never_redialled(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    post_batch(client, auth_headers, batch_body(["+14155550100"], redial={"busy": 5}))
    worker = make_worker()
    run_round(worker, NOON_CHICAGO)
    # As if the worker died before recording ElevenLabs' answer: the call may have been placed.
    conn.execute("UPDATE calls SET status = 'initiating', created_at = now() - interval '1 day'")
    conn.execute(
        "UPDATE call_batch_entries SET state = 'dialling', updated_at = now() - interval '1 day'"
    )
    for hours in (0, 1, 48):
        assert run_round(worker, NOON_CHICAGO + timedelta(hours=hours)) == 0
    assert entry_states(conn) == {"+14155550100": "dialling"}
    assert dials_per_number(elevenlabs) == {"+14155550100": 1}


def test_number_in_two_batches_whose_first_dial_may_have_been_placed_is_dialled_once(
    client, conn, auth_headers, elevenlabs, make_worker
):
    # The number ends in 6: ElevenLabs answers past our read timeout, then places the call.
    post_batch(client, auth_headers, batch_body(["+14155550106"]))
    post_batch(client, auth_headers, batch_body(["+14155550106"]))
    impatient = ElevenLabsClient(
        elevenlabs.base_url, "xi_test_key", connect_timeout=2, read_timeout=0.5
    )
    worker = replace(make_worker(), client=impatient)
    assert run_round(worker, NOON_CHICAGO) == 1
    # It may be ringing: the call stays in flight, its entry dialling, the reason on the call.
    [(status, reason)] = conn.execute("SELECT status, failure_reason FROM calls").fetchall()
    assert status == "initiating"
    assert "may still have been placed" in reason
    assert in_flight(conn) == 1
    for minutes in (0, 1, 10):
        assert run_round(worker, NOON_CHICAGO + timedelta(minutes=minutes)) == 0
    states = conn.execute("SELECT state FROM call_batch_entries ORDER BY id").fetchall()
    assert states == [("dialling",), ("queued",)]
    assert dials_per_number(elevenlabs) == {"+14155550106": 1}


def test_driver_whose_call_reconciliation_found_never_placed_is_dialled_again(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    batch_id = post_batch(client, auth_headers, batch_body(["+14155550100"]))
    worker = make_worker()
    # A worker commits its claim and dies before asking ElevenLabs.
    with worker.pool.connection() as held:
        assert len(claim(held, worker.settings, worker.defaults, NOON_CHICAGO, limit=8)) == 1
    conn.execute("UPDATE calls SET created_at = now() - interval '20 minutes'")
    conn.execute("UPDATE call_batch_entries SET updated_at = now() - interval '20 minutes'")
    settled = reconcile(conn, Conversations(worker.client, elevenlabs.base_url), 15, out=print)
    assert settled["failed"] == 1  # never placed
    # Queued again, due now and not counted against the redials; then dialled.
    assert run_round(worker, NOON_CHICAGO) == 1
    assert entry_states(conn) == {"+14155550100": "in_call"}
    dialled = [seen.body["to_number"] for seen in elevenlabs.received if seen.body]
    assert dialled == ["+14155550100"]
    shown = client.get(f"{BATCHES}/{batch_id}", headers=auth_headers).get_json()
    assert shown["status"] == "running"
    [entry] = shown["entries"]
    assert [a["failure_reason"] for a in entry["attempts"]] == ["never placed", None]


def test_entry_whose_call_was_never_placed_stays_failed_once_its_batch_is_cancelled(
    client, conn, auth_headers, elevenlabs, make_worker
):
    batch_id = post_batch(client, auth_headers, batch_body(["+14155550100"]))
    worker = make_worker()
    with worker.pool.connection() as held:
        claim(held, worker.settings, worker.defaults, NOON_CHICAGO, limit=8)
    client.post(f"{BATCHES}/{batch_id}/cancel", headers=auth_headers)
    conn.execute("UPDATE calls SET created_at = now() - interval '20 minutes'")
    conn.execute("UPDATE call_batch_entries SET updated_at = now() - interval '20 minutes'")
    reconcile(conn, Conversations(worker.client, elevenlabs.base_url), 15, out=print)
    assert run_round(worker, NOON_CHICAGO) == 0
    assert entry_states(conn) == {"+14155550100": "failed"}
    assert [seen.body for seen in elevenlabs.received] == [None]  # the list only: never dialled


def test_entry_left_dialling_whose_call_was_placed_follows_its_call_and_is_redialled_if_busy(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    post_batch(
        client, auth_headers, batch_body(["+14155550100"], redial={"busy": 1, "spacing_minutes": 0})
    )
    worker = make_worker()
    assert run_round(worker, NOON_CHICAGO) == 1
    # As if the worker died after recording ElevenLabs' answer but before moving its entry:
    # the call is initiated (ringing), the entry still dialling, past ORPHAN_AFTER.
    conn.execute(
        "UPDATE call_batch_entries SET state = 'dialling', updated_at = now() - interval '1 day'"
    )
    assert run_round(worker, NOON_CHICAGO) == 0  # its number is in flight
    assert entry_states(conn) == {"+14155550100": "in_call"}
    end_call(client, conn, open_calls(conn)[0], "busy")
    assert run_round(worker, NOON_CHICAGO) == 1  # the batch's busy redial, as for any call
    assert dials_per_number(elevenlabs) == {"+14155550100": 2}


def test_cancel_stops_what_was_not_dialled(client, conn, auth_headers, elevenlabs, make_worker):
    elevenlabs.answer(fresh_ids=True)
    batch_id = post_batch(client, auth_headers, batch_body(numbers(8)))
    worker = make_worker(cap=3)
    assert run_round(worker, NOON_CHICAGO) == 3
    response = client.post(f"{BATCHES}/{batch_id}/cancel", headers=auth_headers)
    assert response.status_code == 200
    assert response.get_json()["counts"]["cancelled"] == 5
    for call_sid in open_calls(conn):
        end_call(client, conn, call_sid)
    assert run_round(worker, NOON_CHICAGO + timedelta(hours=1)) == 0
    assert len(elevenlabs.received) == 3
    shown = client.get(f"{BATCHES}/{batch_id}", headers=auth_headers).get_json()
    assert shown["status"] == "cancelled"
    assert shown["counts"]["completed"] == 3 and shown["counts"]["cancelled"] == 5
    again = client.post(f"{BATCHES}/{batch_id}/cancel", headers=auth_headers)
    assert again.status_code == 200


def waiting_on_a_lock(conn, pid: int) -> None:
    """Return once backend ``pid`` waits on a lock (it got that far), or fail after 10 s."""
    query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
    deadline = clock.monotonic() + 10
    while conn.execute(query, (pid,)).fetchone()[0] != "Lock":
        assert clock.monotonic() < deadline, f"backend {pid} never waited on a lock"
        clock.sleep(0.01)


def test_cancelling_a_pending_batch_during_its_first_claim_waits_for_it_and_never_deadlocks(
    client, conn, database_url, auth_headers, elevenlabs, make_worker
):
    batch_id = post_batch(client, auth_headers, batch_body(numbers(2)))
    worker = make_worker()
    with (
        psycopg.connect(database_url, autocommit=True) as claiming,
        psycopg.connect(database_url, autocommit=True) as cancelling,
        psycopg.connect(database_url) as blocker,
        ThreadPoolExecutor(max_workers=2) as threads,
    ):
        # Hold the claim between locking its entries and writing their calls.
        blocker.execute("LOCK TABLE calls IN SHARE MODE")
        claimed = threads.submit(
            claim, claiming, worker.settings, worker.defaults, NOON_CHICAGO, limit=8
        )
        waiting_on_a_lock(conn, claiming.info.backend_pid)
        cancelled = threads.submit(batches.cancel, cancelling, batch_id)
        waiting_on_a_lock(conn, cancelling.info.backend_pid)
        blocker.rollback()  # the claim goes on: it writes its calls and marks the batch running
        assert len(claimed.result(timeout=30)) == 2
        assert cancelled.result(timeout=30) == "cancelled"
    assert entry_states(conn) == {number: "dialling" for number in numbers(2)}


def test_cancelling_a_completed_batch_returns_409(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    batch_id = post_batch(client, auth_headers, batch_body(numbers(1)))
    worker = make_worker()
    run_round(worker, NOON_CHICAGO)
    end_call(client, conn, open_calls(conn)[0])
    run_round(worker, NOON_CHICAGO)
    response = client.post(f"{BATCHES}/{batch_id}/cancel", headers=auth_headers)
    assert response.status_code == 409
    assert response.get_json()["error"] == "batch_finished"


@pytest.mark.parametrize("how", ["busy", "no-answer"])
def test_busy_or_no_answer_call_ending_after_cancel_is_not_redialled(
    client, conn, auth_headers, elevenlabs, make_worker, how
):
    elevenlabs.answer(fresh_ids=True)
    body = batch_body(["+14155550101"], redial={how: 2, "spacing_minutes": 0})
    batch_id = post_batch(client, auth_headers, body)
    worker = make_worker()
    run_round(worker, NOON_CHICAGO)
    client.post(f"{BATCHES}/{batch_id}/cancel", headers=auth_headers)
    end_call(client, conn, open_calls(conn)[0], how)
    for hours in (0, 1):
        assert run_round(worker, NOON_CHICAGO + timedelta(hours=hours)) == 0
    assert entry_states(conn) == {"+14155550101": "failed"}
    assert len(elevenlabs.received) == 1


def test_window_opening_inside_the_spring_forward_gap_opens_after_it():
    chicago = ZoneInfo("America/Chicago")
    window = Window(time(2, 30), time(4, 0))
    midnight = datetime(2027, 3, 14, 6, 0, tzinfo=UTC)  # 00:00 CST, the day 02:00-03:00 is skipped
    opens = next_opening(window, chicago, midnight)
    assert opens.astimezone(chicago).strftime("%H:%M %Z") == "03:30 CDT"
    assert is_open(window, chicago, opens)


def test_a_worker_holds_no_database_connection_while_elevenlabs_answers(
    client, auth_headers, elevenlabs, make_worker
):
    worker = make_worker()
    in_use = []

    def on_dial(received) -> None:
        stats = worker.pool.get_stats()
        in_use.append(stats["pool_size"] - stats["pool_available"])

    elevenlabs.answer(fresh_ids=True, on_request=on_dial)
    post_batch(client, auth_headers, batch_body(["+14155550100"]))
    assert run_round(worker, NOON_CHICAGO) == 1
    assert in_use == [0]
