"""A signed post-call whose analysis nests deeply: never a 500, whatever depth JSON parses.

ElevenLabs' answers and evaluation are kept as sent, up to a depth; deeper, they
are dropped with a note and the call still completes with its transcript.
"""

import pytest
from webhook_signing import (
    POST_CALL,
    body_of,
    deliveries,
    lines,
    make_call,
    post_signed,
    transcription_event,
)

from models import calls
from webhooks.call_outcome import MAX_JSON_DEPTH

FIELDS = ("data_collection_results", "evaluation_criteria_results")


def nested_body(call_sid: str, field: str, depth: int) -> bytes:
    """Return a post-call body whose analysis field is an object ``depth`` levels deep."""
    event = transcription_event(call_sid)
    # {"eta": {"value": [[…]]}} stores as {"eta": [[…]]}: the arrays are depth - 1 levels.
    inner = {"value": "NESTED"} if field == "data_collection_results" else "NESTED"
    event["data"]["analysis"][field] = {"eta": inner}
    arrays = "[" * (depth - 1) + "]" * (depth - 1)  # built as text: json.dumps would recurse
    return body_of(event).replace(b'"NESTED"', arrays.encode())


@pytest.mark.parametrize("field", FIELDS)
def test_post_call_with_analysis_nested_as_deep_as_json_parses_is_never_a_500(app, conn, field):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as in production, not raised here
    client = app.test_client()
    call = make_call(conn, "conv_post_call")

    def answer(depth: int) -> tuple[int, bool]:
        response = post_signed(client, POST_CALL, body=nested_body(call.call_sid, field, depth))
        reason = response.get_json().get("details", {}).get("reason", "")
        return response.status_code, "nested too deeply" in reason

    # The deepest body the parser takes depends on the stack: found by bisection. Just
    # under it, anything encoded again deeper in the stack than the parse would fail.
    parsed, refused = 100, 100_000
    while refused - parsed > 1:
        middle = (parsed + refused) // 2
        parsed, refused = (parsed, middle) if answer(middle)[1] else (middle, refused)
    answers = {depth: answer(depth) for depth in range(parsed - 80, parsed + 3)}
    assert set(answers.values()) == {(200, False), (400, True)}, answers
    assert calls.by_call_sid(conn, call.call_sid).status == "completed"
    assert len(lines(conn, "conv_post_call")) == 3
    kept = [d for d in deliveries(conn) if d["http_status"] == 200]
    assert all(f"data.analysis.{field} ignored: nested deeper than" in d["reason"] for d in kept)


@pytest.mark.parametrize("field", FIELDS)
def test_post_call_analysis_at_the_depth_limit_is_kept_and_one_deeper_is_dropped(
    client, conn, field
):
    column = "data_collection" if field == "data_collection_results" else "evaluation"
    for depth, stored in ((MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False)):
        call = make_call(conn, f"conv_depth_{depth}")
        event = nested_body(call.call_sid, field, depth).replace(
            b'"conv_post_call"', f'"conv_depth_{depth}"'.encode()
        )
        response = post_signed(client, POST_CALL, body=event)
        assert response.status_code == 200, response.get_json()
        kept = conn.execute(
            f"SELECT {column} FROM call_outcomes WHERE call_id = %s", (call.id,)
        ).fetchone()[0]
        assert (kept is not None) == stored, depth
        reason = deliveries(conn)[-1]["reason"]
        assert ("ignored: nested deeper than" in reason) == (not stored), reason
