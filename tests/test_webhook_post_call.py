"""``POST /webhooks/elevenlabs/post-call``: ElevenLabs' real post-call envelopes."""

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from webhook_signing import (
    POST_CALL,
    body_of,
    deliveries,
    failure_event,
    lines,
    make_call,
    post_signed,
    transcription_event,
)

from app import create_app
from models import calls

START = datetime.fromtimestamp(1795599970, UTC)


def test_post_call_transcription_stores_transcript_and_completes_call(client, conn):
    call = make_call(conn, "conv_post_call")
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    # The fourth turn is an end_call tool call with a null message: not a line.
    assert lines(conn, "conv_post_call") == [
        (
            "agent",
            "Hi Dana, this is dispatch calling about load L-77. Where are you right now?",
            START,
        ),
        (
            "user",
            "Just passed exit 42 on I-80, maybe twenty minutes out.",
            START + timedelta(seconds=5),
        ),
        (
            "agent",
            "Thanks, I'll tell the dock you'll be there around 10:40.",
            START + timedelta(seconds=11),
        ),
    ]
    done = calls.by_call_sid(conn, call.call_sid)
    assert done.status == "completed"
    assert done.completed_at is not None
    assert done.call_duration_secs == 16
    assert done.termination_reason == "end_call tool was called."
    assert done.twilio_call_sid == "CA1b2c3d4e5f60718293a4b5c6d7e8f901"
    [delivery] = deliveries(conn)
    assert (delivery["endpoint"], delivery["event_type"], delivery["outcome"]) == (
        "post-call",
        "post_call_transcription",
        "accepted",
    )
    assert (delivery["call_sid"], delivery["conversation_id"]) == (call.call_sid, "conv_post_call")


def test_post_call_transcription_delivered_twice_is_stored_once(client, conn):
    call = make_call(conn, "conv_post_call")
    first = post_signed(client, POST_CALL, transcription_event(call.call_sid))
    completed_at = calls.by_call_sid(conn, call.call_sid).completed_at
    second = post_signed(client, POST_CALL, transcription_event(call.call_sid))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json()["status"] == "duplicate"
    assert len(lines(conn, "conv_post_call")) == 3
    assert calls.by_call_sid(conn, call.call_sid).completed_at == completed_at


def test_post_call_gives_a_call_without_conversation_id_the_envelopes(client, conn):
    call = make_call(conn, conversation_id=None)
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid, "conv_late"))
    assert response.status_code == 200, response.get_json()
    assert calls.by_call_sid(conn, call.call_sid).conversation_id == "conv_late"
    assert len(lines(conn, "conv_late")) == 3


def test_post_call_naming_no_conversation_for_a_call_without_one_says_reconciliation_settles_it(
    client, conn
):
    # Nothing to file the lines under: replaying the same body cannot help until the
    # call has a conversation, which reconciliation finds at ElevenLabs by call_sid.
    call = make_call(conn, conversation_id=None)
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid, None))
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "no_conversation_id"
    assert answer["message"] == "The call has no conversation_id to file the lines under."
    assert answer["details"]["reason"] == (
        f"call {call.call_sid} has no conversation_id and the event names none; "
        "ops reconcile settles the call from ElevenLabs by its call_sid"
    )
    assert calls.by_call_sid(conn, call.call_sid).status == call.status  # unchanged
    assert deliveries(conn)[0]["outcome"] == "no_conversation_id"


def test_post_call_without_call_sid_variable_finds_the_call_by_conversation_id(client, conn):
    call = make_call(conn, "conv_legacy_call")
    response = post_signed(client, POST_CALL, transcription_event(None, "conv_legacy_call"))
    assert response.status_code == 200
    assert calls.by_call_sid(conn, call.call_sid).status == "completed"


def test_post_call_naming_another_calls_conversation_is_refused(client, conn):
    make_call(conn, "conv_taken")
    call = make_call(conn, conversation_id=None)
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid, "conv_taken"))
    assert response.status_code == 400
    assert response.get_json()["error"] == "conflict"
    assert calls.by_call_sid(conn, call.call_sid).conversation_id is None
    assert deliveries(conn)[0]["outcome"] == "conflict"


def test_post_call_contradicting_the_calls_conversation_is_refused(client, conn):
    call = make_call(conn, "conv_ours")
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid, "conv_other"))
    assert response.status_code == 400
    assert response.get_json()["error"] == "conflict"
    assert lines(conn, "conv_ours") == []
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_call_initiation_failure_marks_call_failed(client, conn):
    call = make_call(conn, "conv_post_call")
    response = post_signed(client, POST_CALL, failure_event())
    assert response.status_code == 200, response.get_json()
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.failure_reason) == ("failed", "no-answer")
    assert deliveries(conn)[0]["event_type"] == "call_initiation_failure"


def test_call_initiation_failure_without_reason_is_unknown(client, conn):
    call = make_call(conn, "conv_post_call")
    event = failure_event()
    event["data"]["failure_reason"] = None
    assert post_signed(client, POST_CALL, event).status_code == 200
    assert calls.by_call_sid(conn, call.call_sid).failure_reason == "unknown"


def test_call_initiation_failure_found_by_twilio_call_sid(client, conn):
    # ElevenLabs answered with a callSid but no conversation_id; the failure names only Twilio's.
    call = calls.create(conn, driver_id=7, phone_number="+14155550123")
    calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id=None,
        twilio_call_sid="CA9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        api_called_at=call.created_at,
    )
    response = post_signed(client, POST_CALL, failure_event("conv_unseen"))
    assert response.status_code == 200, response.get_json()
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.conversation_id) == ("failed", "conv_unseen")


@pytest.mark.parametrize(
    ("record", "said"),
    [
        (calls.mark_failed, "it had failed"),
        (calls.note_may_have_dialled, "its dial was unconfirmed"),
    ],
    ids=["single_call_failed", "batch_dial_held_initiating"],
)
def test_a_call_completed_after_a_failed_placement_no_longer_shows_the_failure(
    client, conn, record, said
):
    # Our request timed out (502, may have dialled): failed, or held by a batch. The
    # call happened after all.
    call = make_call(conn, conversation_id=None)
    timeout = "ElevenLabs did not answer within 20s; the call may have been placed"
    record(conn, call.call_sid, reason=timeout)
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid, "conv_late"))
    assert response.status_code == 200, response.get_json()
    done = calls.by_call_sid(conn, call.call_sid)
    assert (done.status, done.failed_at, done.failure_reason) == ("completed", None, None)
    assert done.completed_at is not None
    # The delivery log keeps what the call went through.
    assert f"call {call.call_sid} completed ({said}: {timeout})" in deliveries(conn)[0]["reason"]


def test_late_failure_cannot_uncomplete_a_call(client, conn):
    call = make_call(conn, "conv_post_call")
    assert post_signed(client, POST_CALL, transcription_event(call.call_sid)).status_code == 200
    late = post_signed(client, POST_CALL, failure_event())
    assert late.status_code == 200
    assert late.get_json()["status"] == "stale"
    after = calls.by_call_sid(conn, call.call_sid)
    assert (after.status, after.failure_reason) == ("completed", None)


def test_transcript_after_a_failure_completes_the_call(client, conn):
    # A transcript proves the call happened, e.g. after our own request timed out.
    call = make_call(conn, "conv_post_call")
    post_signed(client, POST_CALL, failure_event())
    assert post_signed(client, POST_CALL, transcription_event(call.call_sid)).status_code == 200
    assert calls.by_call_sid(conn, call.call_sid).status == "completed"


def test_repeated_failure_changes_nothing(client, conn):
    call = make_call(conn, "conv_post_call")
    post_signed(client, POST_CALL, failure_event(reason="busy"))
    again = post_signed(client, POST_CALL, failure_event(reason="no-answer"))
    assert again.get_json()["status"] == "duplicate"
    assert calls.by_call_sid(conn, call.call_sid).failure_reason == "busy"


@pytest.mark.parametrize("event_type", ["post_call_audio", "conversation.something_new"])
def test_audio_and_unknown_event_types_are_acknowledged_and_nothing_stored(
    client, conn, event_type
):
    call = make_call(conn, "conv_post_call")
    event = {"type": event_type, "event_timestamp": 1795600000, "data": {"agent_id": "a"}}
    if event_type == "post_call_audio":
        event["data"] |= {"conversation_id": "conv_post_call", "full_audio": "UklGRg=="}
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200
    assert response.get_json()["status"] == "acknowledged"
    assert lines(conn, "conv_post_call") == []
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"
    assert deliveries(conn)[0]["event_type"] == event_type


def test_large_post_call_audio_is_acknowledged_and_only_a_prefix_is_logged(client, conn):
    audio = base64.b64encode(b"\x00" * (3 * 1024 * 1024)).decode()  # over MAX_CONTENT_LENGTH
    event = {"type": "post_call_audio", "data": {"conversation_id": "c", "full_audio": audio}}
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200
    [delivery] = deliveries(conn)
    assert delivery["body_truncated"] is True
    assert len(delivery["body"]) == 4 * 1024  # enough to see what it was; audio is not kept
    assert delivery["body_size"] == len(body_of(event))


def test_post_call_over_the_endpoint_limit_returns_400_and_is_recorded(app_config, conn):
    limits = {"transcription": 1024, "post-call": 4096}
    app = create_app({**app_config, "WEBHOOK_READ_LIMITS": limits})
    try:
        event = {"type": "post_call_audio", "data": {"full_audio": "A" * 10_000}}
        response = post_signed(app.test_client(), POST_CALL, event)
        assert response.status_code == 400
        [delivery] = deliveries(conn)
        assert (delivery["outcome"], delivery["body_truncated"]) == ("rejected_malformed", True)
    finally:
        app.extensions["db_pool"].close()


def test_post_call_for_unknown_call_returns_400_and_is_recorded(client, conn):
    response = post_signed(client, POST_CALL, transcription_event("cs_nobody", "conv_nobody"))
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_call"
    [delivery] = deliveries(conn)
    assert (delivery["outcome"], delivery["http_status"]) == ("unknown_call", 400)
    assert conn.execute("SELECT count(*) FROM transcriptions").fetchone()[0] == 0


def _without(path):
    """Return an edit that deletes or nulls the field at ``path`` of the transcription event."""

    def edit(event, value):
        *parents, last = path
        node = event
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()
BROKEN = {
    "type missing": (("type",), _DELETE, "type"),
    "type a number": (("type",), 3, "type"),
    "data null": (("data",), None, "data"),
    "data an array": (("data",), [], "data"),
    "no call named": (("data", "conversation_id"), None, "names no call"),
    "transcript an object": (("data", "transcript"), {}, "data.transcript"),
    "metadata a string": (("data", "metadata"), "x", "data.metadata"),
    "call_sid variable a number": (
        ("data", "conversation_initiation_client_data", "dynamic_variables", "call_sid"),
        7,
        "dynamic_variables.call_sid",
    ),
}


@pytest.mark.parametrize("path, value, named", BROKEN.values(), ids=BROKEN.keys())
def test_post_call_with_missing_or_null_fields_returns_400_naming_the_field(
    client, conn, path, value, named
):
    call = make_call(conn, "conv_post_call")
    event = transcription_event(call.call_sid)
    if path == ("data", "conversation_id"):  # name no call at all: drop the other two as well
        del event["data"]["conversation_initiation_client_data"]
        del event["data"]["metadata"]["phone_call"]
    _without(path)(event, value)
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 400, response.get_json()
    assert named in response.get_json()["details"]["reason"]
    assert deliveries(conn)[0]["outcome"] == "rejected_malformed"
    assert lines(conn, "conv_post_call") == []
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_post_call_with_only_optional_fields_missing_is_accepted(client, conn):
    call = make_call(conn, "conv_post_call")
    event = transcription_event(call.call_sid)
    for key in ("analysis", "status", "agent_id"):
        event["data"].pop(key)
    event["data"]["metadata"] = {"start_time_unix_secs": 1795599970, "phone_call": None}
    assert post_signed(client, POST_CALL, event).status_code == 200
    done = calls.by_call_sid(conn, call.call_sid)
    assert (done.status, done.call_duration_secs, done.twilio_call_sid) == ("completed", None, None)


# How the signature is wrong, and the reason the log gives: a current timestamp
# signed with another secret reaches the HMAC comparison; an old one never does.
BAD_SIGNATURES = {
    "wrong secret": ({"secret": "wsec_someone_else"}, "signature does not match the body"),
    "an hour old": ({"timestamp": time.time() - 3600}, "old; the limit is 1800s"),
}


@pytest.mark.parametrize("signing, reason", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_post_call_with_bad_signature_returns_401_and_changes_nothing(
    client, conn, signing, reason
):
    call = make_call(conn, "conv_post_call")
    response = post_signed(client, POST_CALL, transcription_event(call.call_sid), **signing)
    assert response.status_code == 401
    [delivery] = deliveries(conn)
    assert (delivery["outcome"], delivery["signature_valid"]) == ("rejected_signature", False)
    assert reason in delivery["reason"]
    assert lines(conn, "conv_post_call") == []
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_call_initiation_failure_with_an_unknown_twilio_body_shape_still_fails_the_call(
    client, conn
):
    call = make_call(conn, "conv_post_call")
    event = failure_event()
    event["data"]["metadata"]["body"] = "CallSid=CA1&CallStatus=busy"  # form-encoded, say
    assert post_signed(client, POST_CALL, event).status_code == 200
    assert calls.by_call_sid(conn, call.call_sid).status == "failed"
