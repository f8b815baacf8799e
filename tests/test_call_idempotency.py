"""``Idempotency-Key`` on ``POST /driver_data/call-elevenlabs``: a retry never dials twice."""

import threading
import time

import psycopg
import pytest

from elevenlabs.simulator import ANSWER_OK, ERROR_422

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

PATIENCE_SECONDS = 30  # an upper bound on a slow machine, not a speed target

CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123"}


def post_call(client, headers, key, body=CALL_REQUEST):
    return client.post(
        "/driver_data/call-elevenlabs", json=body, headers={**headers, "Idempotency-Key": key}
    )


def call_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM calls").fetchone()[0]


def test_a_retry_with_the_same_key_gets_the_first_answer_and_never_dials_again(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    first = post_call(client, auth_headers, "order-7-call-1")
    retry = post_call(client, auth_headers, "order-7-call-1")

    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(elevenlabs.received) == 1
    assert call_count(conn) == 1


def test_a_failed_call_is_replayed_as_the_same_502_without_dialling(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ERROR_422, status=422)
    first = post_call(client, auth_headers, "k-502")
    retry = post_call(client, auth_headers, "k-502")

    assert first.status_code == retry.status_code == 502
    assert retry.get_json() == first.get_json()
    assert len(elevenlabs.received) == 1
    assert call_count(conn) == 1


def test_the_same_key_with_another_body_is_422_and_nothing_is_written(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    first = post_call(client, auth_headers, "k-1")
    other = post_call(client, auth_headers, "k-1", {**CALL_REQUEST, "driver_id": 43})

    assert other.status_code == 422
    assert other.get_json()["error"] == "idempotency_key_reused"
    assert other.get_json()["details"]["call_sid"] == first.get_json()["call_sid"]
    assert len(elevenlabs.received) == 1
    assert call_count(conn) == 1


def test_different_keys_are_different_calls(client, auth_headers, elevenlabs, conn):
    elevenlabs.answer(ANSWER_OK, fresh_ids=True)
    post_call(client, auth_headers, "k-a")
    post_call(client, auth_headers, "k-b")
    assert len(elevenlabs.received) == 2
    assert call_count(conn) == 2


def test_a_retry_while_the_first_request_is_still_dialling_is_409_naming_its_call(
    app, auth_headers, elevenlabs, conn
):
    answered = {}
    elevenlabs.answer(ANSWER_OK, hang=True)
    first = threading.Thread(
        target=lambda: answered.update(first=post_call(app.test_client(), auth_headers, "k-busy"))
    )
    first.start()
    # Bounded, so a first request that never dials fails here instead of hanging the suite.
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not elevenlabs.received:  # the first request is now waiting on ElevenLabs
        assert time.monotonic() < deadline, f"the first request never dialled: {answered}"
        threading.Event().wait(0.01)
    retry = post_call(app.test_client(), auth_headers, "k-busy")
    elevenlabs.release()
    first.join(timeout=30)

    assert retry.status_code == 409
    assert retry.get_json()["error"] == "idempotency_key_in_progress"
    assert retry.get_json()["details"]["call_sid"] == answered["first"].get_json()["call_sid"]
    assert retry.get_json()["details"]["status"] == "initiating"
    assert len(elevenlabs.received) == 1
    assert call_count(conn) == 1


def test_a_key_whose_request_died_before_answering_is_409_with_its_call(
    client, auth_headers, elevenlabs, conn
):
    # What a worker killed mid call creation leaves: the key and its call, no answer.
    conn.execute(
        "INSERT INTO calls (call_sid, driver_id, phone_number, status) "
        "VALUES ('cs_dead', 42, '+14155550123', 'initiating')"
    )
    elevenlabs.answer(ANSWER_OK)
    post_call(client, auth_headers, "k-dead")  # takes the key for a call of its own
    conn.execute(
        "UPDATE idempotency_keys SET call_sid = 'cs_dead', response_status = NULL, "
        "response_body = NULL"
    )
    retry = post_call(client, auth_headers, "k-dead")

    assert retry.status_code == 409
    assert retry.get_json()["details"] == {"call_sid": "cs_dead", "status": "initiating"}
    assert len(elevenlabs.received) == 1


def test_a_key_is_honoured_a_day_later(client, auth_headers, elevenlabs, conn):
    elevenlabs.answer(ANSWER_OK)
    first = post_call(client, auth_headers, "k-day")
    conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    assert post_call(client, auth_headers, "k-day").get_json() == first.get_json()
    assert len(elevenlabs.received) == 1


def test_a_refused_request_keeps_nothing_and_its_key_can_be_used_again(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    refused = post_call(client, auth_headers, "k-fix", {"driver_id": 42})
    placed = post_call(client, auth_headers, "k-fix")

    assert refused.status_code == 400
    assert placed.status_code == 201
    assert len(elevenlabs.received) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_key_is_400_and_nothing_is_written(client, auth_headers, elevenlabs, conn, key):
    response = post_call(client, auth_headers, key)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_idempotency_key"
    assert call_count(conn) == 0
    assert elevenlabs.received == []
    with psycopg.ClientCursor(conn) as cur:
        assert cur.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 0
