"""Post-call fields kept only for the record, and Twilio's call SID as the last way to the call.

A field the webhook does not need (why the call ended, why it failed, Twilio's
SID, the duration) is cut or ignored when unusable, and the delivery's reason says
so: refusing the envelope would lose its transcript, and no replay could apply it.
"""

import pytest
from webhook_signing import (
    POST_CALL,
    deliveries,
    failure_event,
    fixture,
    lines,
    make_call,
    post_signed,
    transcription_event,
)

from models import calls

TWILIO_CALL_SID = "CA9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # the failure fixture's CallSid
LONG_TERMINATION_REASON = "LLM error: " + "x" * 2100


def test_call_initiation_failure_naming_only_twilios_call_sid_fails_the_call(client, conn):
    # ElevenLabs answered with a callSid but no conversation_id, and the failure
    # names neither our call_sid nor a conversation: only Twilio's CallSid is left.
    call = calls.create(conn, driver_id=7, phone_number="+14155550123")
    calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id=None,
        twilio_call_sid=TWILIO_CALL_SID,
        api_called_at=call.created_at,
    )
    event = fixture("call_initiation_failure.json")
    event["data"]["conversation_id"] = None
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.failure_reason) == ("failed", "no-answer")
    assert deliveries(conn)[0]["outcome"] == "accepted"


def test_call_initiation_failure_naming_no_call_at_all_returns_400(client, conn):
    event = fixture("call_initiation_failure.json")
    event["data"]["conversation_id"] = None
    del event["data"]["metadata"]["body"]["CallSid"]
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 400
    assert "names no call" in response.get_json()["details"]["reason"]
    assert deliveries(conn)[0]["outcome"] == "rejected_malformed"


def test_call_initiation_failure_naming_an_unknown_twilio_call_sid_is_unknown_call(client, conn):
    event = fixture("call_initiation_failure.json")
    event["data"]["conversation_id"] = None
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_call"
    assert TWILIO_CALL_SID in deliveries(conn)[0]["reason"]


def _set(event: dict, path: tuple, value) -> None:
    *parents, last = path
    for key in parents:
        event = event[key]
    event[last] = value


METADATA = ("data", "metadata")
UNUSABLE = {
    "termination_reason over 2000 characters": (
        (*METADATA, "termination_reason"),
        LONG_TERMINATION_REASON,
        "data.metadata.termination_reason cut to 2000 of its 2111 characters",
        ("termination_reason", LONG_TERMINATION_REASON[:2000]),
    ),
    "termination_reason an object": (
        (*METADATA, "termination_reason"),
        {"code": 1000},
        "data.metadata.termination_reason ignored: an object, not a string",
        ("termination_reason", None),
    ),
    "Twilio's call_sid too long": (
        (*METADATA, "phone_call", "call_sid"),
        "CA" + "f" * 300,
        "data.metadata.phone_call.call_sid ignored: 302 characters; the limit is 200",
        ("twilio_call_sid", None),
    ),
    "Twilio's call_sid a number": (
        (*METADATA, "phone_call", "call_sid"),
        12345,
        "data.metadata.phone_call.call_sid ignored: a number, not a string",
        ("twilio_call_sid", None),
    ),
    "phone_call an array": (
        (*METADATA, "phone_call"),
        [],
        "data.metadata.phone_call ignored: not an object",
        ("twilio_call_sid", None),
    ),
    "duration a string": (
        (*METADATA, "call_duration_secs"),
        "16",
        "data.metadata.call_duration_secs must be a number, not a string: ignored",
        ("call_duration_secs", None),
    ),
    "duration negative": (
        (*METADATA, "call_duration_secs"),
        -1,
        "data.metadata.call_duration_secs is out of range (-1): ignored",
        ("call_duration_secs", None),
    ),
}


@pytest.mark.parametrize("path, value, note, kept", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_post_call_with_an_unusable_informational_field_keeps_the_transcript_and_says_so(
    client, conn, path, value, note, kept
):
    call = make_call(conn, "conv_post_call")
    event = transcription_event(call.call_sid)
    _set(event, path, value)
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert len(lines(conn, "conv_post_call")) == 3
    done = calls.by_call_sid(conn, call.call_sid)
    assert done.status == "completed"
    column, expected = kept
    assert getattr(done, column) == expected
    [delivery] = deliveries(conn)
    assert delivery["outcome"] == "accepted"
    assert note in delivery["reason"]


FAILURE_REASONS = {
    "over 200 characters": (
        "unknown: " + "y" * 300,
        "unknown: " + "y" * 191,
        "data.failure_reason cut to 200 of its 309 characters",
    ),
    "an object": ({"code": 486}, "unknown", "data.failure_reason ignored: an object, not a string"),
}


@pytest.mark.parametrize("sent, stored, note", FAILURE_REASONS.values(), ids=FAILURE_REASONS.keys())
def test_call_initiation_failure_with_an_unusable_reason_still_fails_the_call_and_says_so(
    client, conn, sent, stored, note
):
    call = make_call(conn, "conv_post_call")
    event = failure_event()
    event["data"]["failure_reason"] = sent
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200, response.get_json()
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.failure_reason) == ("failed", stored)
    [delivery] = deliveries(conn)
    assert delivery["outcome"] == "accepted"
    assert note in delivery["reason"]


def _initiated_without_conversation(conn, twilio_call_sid: str):
    """Return a call ElevenLabs answered with Twilio's SID and a null conversation_id."""
    call = calls.create(conn, driver_id=7, phone_number="+14155550123")
    return calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id=None,
        twilio_call_sid=twilio_call_sid,
        api_called_at=call.created_at,
    )


def test_post_call_naming_a_call_sid_no_call_has_is_unknown_call_not_matched_by_twilios_sid(
    client, conn
):
    # Another call happens to carry the envelope's Twilio SID: the call_sid the
    # event names is the stronger key, and it names no call of ours.
    other = _initiated_without_conversation(conn, "CA1b2c3d4e5f60718293a4b5c6d7e8f901")
    response = post_signed(client, POST_CALL, transcription_event("cs_no_such_call"))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "unknown_call"
    assert "'cs_no_such_call'" in response.get_json()["details"]["reason"]
    untouched = calls.by_call_sid(conn, other.call_sid)
    assert (untouched.status, untouched.conversation_id) == ("initiated", None)
    assert lines(conn, "conv_post_call") == []


def test_failure_naming_only_a_twilio_sid_two_calls_share_is_a_conflict_and_changes_neither(
    client, conn
):
    twins = [_initiated_without_conversation(conn, TWILIO_CALL_SID) for _ in range(2)]
    event = fixture("call_initiation_failure.json")
    event["data"]["conversation_id"] = None
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "conflict"
    reason = response.get_json()["details"]["reason"]
    assert TWILIO_CALL_SID in reason and all(twin.call_sid in reason for twin in twins)
    assert [calls.by_call_sid(conn, twin.call_sid).status for twin in twins] == ["initiated"] * 2
    assert deliveries(conn)[0]["outcome"] == "conflict"
