"""A post-call whose lines cannot all be timed still completes the call and keeps its outcome.

Without the call's start the lines are timed from when the event was sent, less
the call's length; a turn with no usable role or time in call is skipped. Each
is noted in the delivery's reason: refusing the envelope would lose the call's
end and outcome, and no replay or reconciliation could ever apply them.
"""

from datetime import UTC, datetime

import pytest
from webhook_signing import (
    POST_CALL,
    deliveries,
    lines,
    make_call,
    post_signed,
    transcription_event,
)

from models import calls

# The fixture's event_timestamp and call_duration_secs: the call started 16 s before.
SENT_AT, DURATION = 1795600000, 16
START = "data.metadata.start_time_unix_secs"


def _outcome_of(conn, call) -> str | None:
    row = conn.execute(
        "SELECT call_successful FROM call_outcomes WHERE call_id = %s", (call.id,)
    ).fetchone()
    return row and row[0]


def _send(client, conn, edit):
    """Send the fixture for a fresh call, edited; return the call, the answer and the reason."""
    call = make_call(conn, "conv_post_call")
    event = transcription_event(call.call_sid)
    edit(event)
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    done = calls.by_call_sid(conn, call.call_sid)
    assert done.status == "completed"
    assert _outcome_of(conn, call) == "success"
    return call, deliveries(conn)[-1]["reason"]


@pytest.mark.parametrize(
    "start, said",
    [
        ("missing", f"{START} is missing or null"),
        (None, f"{START} is missing or null"),
        ("soon", f"{START} is neither ISO 8601 nor unix seconds"),
    ],
)
def test_post_call_without_a_usable_start_times_its_lines_from_when_it_was_sent(
    client, conn, start, said
):
    def edit(event):
        metadata = event["data"]["metadata"]
        if start == "missing":
            del metadata["start_time_unix_secs"]
        else:
            metadata["start_time_unix_secs"] = start

    _call, reason = _send(client, conn, edit)
    assert said in reason
    assert ": lines timed from event_timestamp - call_duration_secs" in reason
    started = SENT_AT - DURATION
    assert [(speaker, at) for speaker, _, at in lines(conn, "conv_post_call")] == [
        ("agent", datetime.fromtimestamp(started, UTC)),
        ("user", datetime.fromtimestamp(started + 5, UTC)),
        ("agent", datetime.fromtimestamp(started + 11, UTC)),
    ]


@pytest.mark.parametrize(
    "missing", [("event_timestamp",), ("data", "metadata", "call_duration_secs")]
)
def test_post_call_without_a_start_or_a_way_to_work_it_out_completes_the_call_without_lines(
    client, conn, missing
):
    def edit(event):
        del event["data"]["metadata"]["start_time_unix_secs"]
        node = event
        for key in missing[:-1]:
            node = node[key]
        del node[missing[-1]]

    _call, reason = _send(client, conn, edit)
    assert f"{START} is missing or null and cannot be worked out: 3 lines not stored" in reason
    assert "0 new lines" in reason
    assert lines(conn, "conv_post_call") == []


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("role", "missing", "data.transcript[1].role is missing or null"),
        ("role", None, "data.transcript[1].role is missing or null"),
        ("time_in_call_secs", "missing", "data.transcript[1].time_in_call_secs is missing or null"),
        ("time_in_call_secs", None, "data.transcript[1].time_in_call_secs is missing or null"),
        ("time_in_call_secs", "5", "data.transcript[1].time_in_call_secs must be a number"),
        ("time_in_call_secs", 10**10, "data.transcript[1]'s time in call is outside 2000 to 2100"),
    ],
)
def test_post_call_turn_without_a_usable_role_or_time_is_skipped_and_the_rest_kept(
    client, conn, field, value, said
):
    def edit(event):
        turn = event["data"]["transcript"][1]
        if value == "missing":
            del turn[field]
        else:
            turn[field] = value

    _call, reason = _send(client, conn, edit)
    assert said in reason and ": turn skipped" in reason
    assert "2 new lines" in reason
    assert [speaker for speaker, _, _ in lines(conn, "conv_post_call")] == ["agent", "agent"]


@pytest.mark.parametrize(
    "turn, said",
    [
        ("hello", "data.transcript[1] must be an object"),
        ({"role": "user", "message": 5, "time_in_call_secs": 5}, "message must be a string"),
        ({"role": "user", "message": "a\x00b", "time_in_call_secs": 5}, "NUL"),
        ({"role": "user", "message": "x" * 20_001, "time_in_call_secs": 5}, "20000"),
    ],
    ids=["not_an_object", "message_a_number", "message_with_nul", "message_too_long"],
)
def test_post_call_turn_that_cannot_be_a_line_is_skipped_and_the_rest_kept(
    client, conn, turn, said
):
    def edit(event):
        event["data"]["transcript"][1] = turn

    _call, reason = _send(client, conn, edit)
    assert said in reason and ": turn skipped" in reason, reason
    assert "2 new lines" in reason
    assert [speaker for speaker, _, _ in lines(conn, "conv_post_call")] == ["agent", "agent"]


def test_post_call_with_many_unusable_turns_says_how_many_in_one_note(client, conn):
    def edit(event):
        for turn in event["data"]["transcript"]:
            turn["role"] = None

    _call, reason = _send(client, conn, edit)
    assert "data.transcript[0].role is missing or null: turn skipped (and 2 more)" in reason
    assert lines(conn, "conv_post_call") == []
