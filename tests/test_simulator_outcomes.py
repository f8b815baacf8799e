"""Each outcome of the simulator's table (the number's last digit), end to end through the service.

The service is served over real HTTP (conftest's ``service``: the simulator's
webhooks need an address) and points at the simulator, which signs with the
service's webhook secret.
"""

import pytest
from gunicorn_server import wait_for
from simulated_calls import SPOKEN_LINES, call_when, get, place


def test_number_ending_in_0_is_answered_and_completed_with_its_transcript(service, simulator):
    created = place(service, "+14155550120")
    assert created.status_code == 201
    call = call_when(
        service, created.json()["call_sid"], lambda c: c["status"] == "completed", "completion"
    )

    assert call["termination_reason"] == "end_call tool was called."
    assert call["call_duration_secs"] >= 1
    transcript = [(line["speaker"], line["message"]) for line in call["transcript"]]
    assert len(transcript) == SPOKEN_LINES  # per-line and post-call copies are one line each
    assert transcript[0] == (
        "agent",
        "Hi Dana, this is dispatch calling about load L-77. Where are you now?",
    )
    # Every webhook was signed as the service expects and accepted.
    assert simulator.deliveries == [("transcription", 200)] * SPOKEN_LINES + [("post-call", 200)]
    done = simulator.conversations[call["conversation_id"]]
    assert done["status"] == "done"
    assert set(done["analysis"]["data_collection_results"]) == {"eta", "load_status", "location"}
    assert done["metadata"]["cost"] > 0


def test_any_other_last_digit_is_answered_too(service):
    created = place(service, "+14155550129")
    assert created.status_code == 201
    call_when(
        service, created.json()["call_sid"], lambda c: c["status"] == "completed", "completion"
    )


@pytest.mark.parametrize(
    ("number", "reason"), [("+14155550121", "busy"), ("+14155550122", "no-answer")]
)
def test_number_ending_in_1_or_2_fails_with_elevenlabs_failure_reason(
    service, simulator, number, reason
):
    created = place(service, number)
    assert created.status_code == 201
    call = call_when(
        service, created.json()["call_sid"], lambda c: c["status"] == "failed", "failure"
    )

    assert reason in call["failure_reason"]
    assert call["transcript"] == []
    assert simulator.deliveries == [("post-call", 200)]
    assert simulator.conversations[call["conversation_id"]]["status"] == "failed"


def test_number_ending_in_3_is_answered_but_no_webhook_comes(service, simulator):
    created = place(service, "+14155550123")
    assert created.status_code == 201
    conversation_id = created.json()["conversation_id"]
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")

    call = get(f"{service}/driver_data/calls/{created.json()['call_sid']}")
    assert call["status"] == "initiated"  # only the conversation endpoint knows it ended
    assert simulator.deliveries == []
    asked = get(f"{simulator.base_url}/v1/convai/conversations/{conversation_id}")
    assert asked["status"] == "done"
    assert len([turn for turn in asked["transcript"] if turn["message"]]) == SPOKEN_LINES


def test_number_ending_in_4_is_refused_with_elevenlabs_validation_detail(service, simulator):
    refused = place(service, "+14155550124")

    assert refused.status_code == 502
    assert "to_number" in refused.json()["details"]["reason"]
    assert simulator.conversations == {}


def test_number_ending_in_5_is_refused_as_over_the_concurrency_limit(service):
    refused = place(service, "+14155550125")

    assert refused.status_code == 502
    assert "too_many_concurrent_requests" in refused.json()["details"]["reason"]


def test_number_ending_in_6_hangs_past_the_read_timeout_then_the_call_completes(service):
    timed_out = place(service, "+14155550126")

    assert timed_out.status_code == 502
    assert timed_out.json()["details"]["may_have_dialled"] is True
    # The call was placed after all: its post-call webhook completes it.
    call_sid = timed_out.json()["details"]["call_sid"]
    call = call_when(service, call_sid, lambda c: c["status"] == "completed", "late completion")
    assert len(call["transcript"]) == SPOKEN_LINES


def test_calls_beyond_the_concurrency_limit_get_429_until_one_ends(service, simulator):
    first, second = place(service, "+14155550120"), place(service, "+14155550130")
    assert (first.status_code, second.status_code) == (201, 201)

    third = place(service, "+14155550140")
    assert third.status_code == 502
    assert "too_many_concurrent_requests" in third.json()["details"]["reason"]

    call_when(service, first.json()["call_sid"], lambda c: c["status"] == "completed", "completion")
    wait_for(lambda: simulator.in_progress < simulator.concurrency, "a free line")
    assert place(service, "+14155550150").status_code == 201
