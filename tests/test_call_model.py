"""The Call model: guarded transitions, so a late or repeated update never moves a call back."""

from datetime import UTC, datetime

import psycopg
import pytest

import transcription_helpers
from models import calls

NUMBER = "+14155550123"
CALLED_AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def call(conn):
    """Return a fresh call in ``initiating``."""
    return calls.create(conn, driver_id=7, phone_number=NUMBER, driver_name="Dana")


def initiate(conn, call_sid, conversation_id="conv_1", twilio_call_sid="CA1"):
    return calls.mark_initiated(
        conn,
        call_sid,
        conversation_id=conversation_id,
        twilio_call_sid=twilio_call_sid,
        api_called_at=CALLED_AT,
    )


def complete(conn, call_sid, duration=16):
    return calls.mark_completed(
        conn,
        call_sid,
        call_duration_secs=duration,
        termination_reason="end_call tool was called.",
        twilio_call_sid="CA_from_webhook",
    )


def test_new_call_is_initiating_with_a_fresh_call_sid_and_no_conversation(conn, call):
    other = calls.create(conn, driver_id=7, phone_number=NUMBER)
    assert call.status == calls.INITIATING
    assert call.conversation_id is None
    assert call.call_sid.startswith("cs_") and len(call.call_sid) == 35
    assert other.call_sid != call.call_sid
    assert calls.by_call_sid(conn, call.call_sid) == call


def test_initiated_call_keeps_elevenlabs_ids_and_times(conn, call):
    initiated = initiate(conn, call.call_sid)
    assert initiated.status == calls.INITIATED
    assert initiated.conversation_id == "conv_1"
    assert initiated.twilio_call_sid == "CA1"
    assert initiated.api_called_at == CALLED_AT
    assert initiated.initiated_at is not None
    assert calls.by_conversation_id(conn, "conv_1") == initiated


def test_initiating_twice_changes_nothing_already_known(conn, call):
    first = initiate(conn, call.call_sid)
    again = initiate(conn, call.call_sid, conversation_id="conv_2", twilio_call_sid="CA2")
    assert again.conversation_id == "conv_1"
    assert again.twilio_call_sid == "CA1"
    assert again.initiated_at == first.initiated_at


def test_late_acceptance_keeps_ids_but_not_the_status_of_a_completed_call(conn, call):
    complete(conn, call.call_sid)
    late = initiate(conn, call.call_sid)
    assert late.status == calls.COMPLETED
    assert late.initiated_at is None
    assert late.conversation_id == "conv_1"


def test_failed_call_keeps_its_reason(conn, call):
    failed = calls.mark_failed(conn, call.call_sid, reason="refused", api_called_at=CALLED_AT)
    assert failed.status == calls.FAILED
    assert failed.failure_reason == "refused"
    assert failed.failed_at is not None
    assert failed.api_called_at == CALLED_AT


def test_a_second_failure_does_not_overwrite_the_first_reason(conn, call):
    calls.mark_failed(conn, call.call_sid, reason="first")
    assert calls.mark_failed(conn, call.call_sid, reason="second") is None
    assert calls.by_call_sid(conn, call.call_sid).failure_reason == "first"


def test_initiated_call_can_still_fail_from_its_webhook(conn, call):
    initiate(conn, call.call_sid)
    failed = calls.mark_failed(conn, call.call_sid, reason="no-answer")
    assert failed.status == calls.FAILED
    assert failed.conversation_id == "conv_1"


def test_completed_call_never_becomes_failed(conn, call):
    initiate(conn, call.call_sid)
    complete(conn, call.call_sid)
    assert calls.mark_failed(conn, call.call_sid, reason="late failure") is None
    assert calls.by_call_sid(conn, call.call_sid).status == calls.COMPLETED


def test_failed_call_completes_when_its_transcript_proves_it_happened(conn, call):
    calls.mark_failed(conn, call.call_sid, reason="read timeout")
    completed = complete(conn, call.call_sid)
    assert completed.status == calls.COMPLETED
    assert completed.call_duration_secs == 16
    assert completed.termination_reason == "end_call tool was called."
    assert completed.twilio_call_sid == "CA_from_webhook"
    # The call no longer shows a failure; the delivery log keeps what happened.
    assert (completed.failure_reason, completed.failed_at) == (None, None)


def test_completing_twice_changes_nothing(conn, call):
    first = complete(conn, call.call_sid, duration=16)
    assert complete(conn, call.call_sid, duration=99) is None
    assert calls.by_call_sid(conn, call.call_sid).completed_at == first.completed_at


def test_conversation_is_attached_only_to_a_call_without_one(conn, call):
    attached = calls.attach_conversation(conn, call.call_sid, "conv_late")
    assert attached.conversation_id == "conv_late"
    assert calls.attach_conversation(conn, call.call_sid, "conv_other") is None
    assert calls.by_call_sid(conn, call.call_sid).conversation_id == "conv_late"


def test_two_calls_cannot_share_a_conversation(conn, call):
    initiate(conn, call.call_sid)
    other = calls.create(conn, driver_id=8, phone_number=NUMBER)
    with pytest.raises(psycopg.errors.UniqueViolation):
        initiate(conn, other.call_sid)


def test_unknown_call_sid_finds_nothing(conn):
    assert calls.by_call_sid(conn, "cs_unknown") is None
    assert calls.mark_failed(conn, "cs_unknown", reason="x") is None
    assert initiate(conn, "cs_unknown") is None


def test_transcript_of_a_call_without_conversation_is_empty(conn):
    assert transcription_helpers.transcript(conn, None) == []
