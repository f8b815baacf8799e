"""Post-call webhooks racing other writers of the same call: the verdict follows what is committed.

A post-call delivery reads its call, then changes it. Between the two, ElevenLabs'
answer to our call request, a twin delivery or the other post-call event may
commit a change to that call; these tests commit one exactly there, for real:
the other writer's open transaction holds the row until the delivery waits on it.
"""

import threading

import psycopg
import pytest
from webhook_signing import (
    POST_CALL,
    deliveries,
    failure_event,
    lines,
    make_call,
    post_signed,
    service_backend_waiting_on_a_lock,
    transcription_event,
)

from app import create_app
from models import calls

PARALLEL = 8


@pytest.fixture
def committed_meanwhile(client, conn, database_url):
    """Return ``deliver(event, change)``: post ``event`` while ``change`` commits meanwhile.

    ``change(other)`` runs first in a transaction left open, holding the rows it
    changed; the delivery reads the call as it was, then waits on that lock to
    change it; only then does ``change`` commit. Returns the delivery's answer.
    """

    def deliver(event, change):
        answer = {}
        with psycopg.connect(database_url) as other:
            change(other)
            delivering = threading.Thread(
                target=lambda: answer.update(response=post_signed(client, POST_CALL, event))
            )
            delivering.start()
            service_backend_waiting_on_a_lock(conn)
            other.commit()
            delivering.join(timeout=30)
        return answer["response"]

    return deliver


def initiate(call, conversation_id):
    """Return ``change(other)``: ElevenLabs' answer gives the call this conversation_id."""
    return lambda other: calls.mark_initiated(
        other,
        call.call_sid,
        conversation_id=conversation_id,
        twilio_call_sid=None,
        api_called_at=call.created_at,
    )


def test_post_call_whose_call_got_the_same_conversation_id_meanwhile_is_accepted(
    client, conn, committed_meanwhile
):
    call = make_call(conn, conversation_id=None)
    event = transcription_event(call.call_sid, "conv_race")
    response = committed_meanwhile(event, initiate(call, "conv_race"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert len(lines(conn, "conv_race")) == 3
    done = calls.by_call_sid(conn, call.call_sid)
    assert (done.status, done.conversation_id) == ("completed", "conv_race")


def test_post_call_whose_call_got_another_conversation_id_meanwhile_is_a_conflict(
    client, conn, committed_meanwhile
):
    call = make_call(conn, conversation_id=None)
    event = transcription_event(call.call_sid, "conv_race")
    response = committed_meanwhile(event, initiate(call, "conv_from_api"))
    assert response.status_code == 400
    assert response.get_json()["error"] == "conflict"
    assert "has conversation_id 'conv_from_api'" in deliveries(conn)[0]["reason"]
    assert lines(conn, "conv_race") == []


def test_post_call_naming_a_conversation_another_call_took_meanwhile_is_a_conflict_not_a_500(
    client, conn, committed_meanwhile
):
    call = make_call(conn, conversation_id=None)
    other_call = make_call(conn, conversation_id=None)
    event = transcription_event(call.call_sid, "conv_race")
    response = committed_meanwhile(event, initiate(other_call, "conv_race"))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "conflict"
    assert f"call {other_call.call_sid} has it" in deliveries(conn)[0]["reason"]
    assert calls.by_call_sid(conn, call.call_sid).conversation_id is None


def test_parallel_identical_post_calls_for_a_call_without_conversation_id_all_succeed(
    app_config, conn
):
    app = create_app({**app_config, "DB_POOL_MIN_SIZE": PARALLEL, "DB_POOL_MAX_SIZE": PARALLEL + 2})
    try:
        # Many rounds: the race is lost only when a delivery reads the call before a
        # twin commits and looks again after, which about one round in ten does.
        for round_ in range(50):
            call = make_call(conn, conversation_id=None)
            event = transcription_event(call.call_sid, f"conv_parallel_{round_}")
            answers = post_all_at_once(app, [event] * PARALLEL)
            assert [status for status, _ in answers] == [200] * PARALLEL, answers
            assert sorted(body["status"] for _, body in answers).count("accepted") == 1
            assert len(lines(conn, f"conv_parallel_{round_}")) == 3
    finally:
        app.extensions["db_pool"].close()


def post_all_at_once(app, events) -> list[tuple[int, dict]]:
    """POST each event from its own thread, released together; return (status, body) of each."""
    start = threading.Barrier(len(events))
    answers = [None] * len(events)

    def deliver(number):
        client = app.test_client()
        start.wait()
        response = post_signed(client, POST_CALL, events[number])
        answers[number] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_failure_that_lost_the_race_to_a_completion_is_logged_stale(
    client, conn, committed_meanwhile
):
    call = make_call(conn, "conv_post_call")
    response = committed_meanwhile(
        failure_event(),
        lambda other: calls.mark_completed(
            other,
            call.call_sid,
            call_duration_secs=16,
            termination_reason=None,
            twilio_call_sid=None,
        ),
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "stale"
    [delivery] = deliveries(conn)
    assert delivery["outcome"] == "stale"
    assert "already completed; a late failure cannot undo it" in delivery["reason"]
    after = calls.by_call_sid(conn, call.call_sid)
    assert (after.status, after.failure_reason) == ("completed", None)
