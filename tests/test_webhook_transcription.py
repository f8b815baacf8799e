"""``POST /webhooks/elevenlabs/transcription``: signed, two-step lookup, idempotent, recorded."""

import json
import time
from datetime import UTC, datetime

import pytest
from webhook_signing import (
    TRANSCRIPTION,
    WEBHOOK_SECRET,
    body_of,
    deliveries,
    fixture,
    lines,
    make_call,
    post_signed,
    post_with_header,
    sdk_construct_event,
    signature_header,
)

import transcription_helpers as helpers
from elevenlabs import signature as webhook_signature

AT = datetime(2026, 11, 25, 10, 20, tzinfo=UTC)


def line(call_sid=None, **fields) -> dict:
    """Return the per-line webhook body (the shared fixture), for a call_sid or other keys."""
    payload = fixture("transcription_line.json", call_sid or "")
    if call_sid is None:
        del payload["call_sid"]
    payload.update(fields)
    return payload


def test_signed_line_by_call_sid_is_saved_under_the_calls_conversation(client, conn):
    call = make_call(conn, "conv_two_step")
    response = post_signed(client, TRANSCRIPTION, line(call.call_sid))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert lines(conn, "conv_two_step") == [
        ("agent", "Hi Dana, this is dispatch calling about load L-77.", AT)
    ]
    [delivery] = deliveries(conn)
    assert delivery["id"] == response.get_json()["delivery_id"]
    assert (delivery["endpoint"], delivery["outcome"], delivery["http_status"]) == (
        "transcription",
        "accepted",
        200,
    )
    assert delivery["signature_valid"] is True
    assert delivery["call_sid"] == call.call_sid
    assert bytes(delivery["body"]) == body_of(line(call.call_sid))


def test_same_line_delivered_twice_is_stored_once(client, conn):
    call = make_call(conn)
    first = post_signed(client, TRANSCRIPTION, line(call.call_sid))
    second = post_signed(client, TRANSCRIPTION, line(call.call_sid))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json()["status"] == "duplicate"
    assert len(lines(conn, call.conversation_id)) == 1
    assert [d["outcome"] for d in deliveries(conn)] == ["accepted", "duplicate"]


def test_line_by_conversation_id_is_accepted_during_rollback(client, conn):
    make_call(conn, "conv_rollback")
    response = post_signed(client, TRANSCRIPTION, line(conversation_id="conv_rollback"))
    assert response.status_code == 200
    assert len(lines(conn, "conv_rollback")) == 1
    assert deliveries(conn)[0]["conversation_id"] == "conv_rollback"


def test_line_sent_by_call_sid_and_again_by_conversation_id_is_stored_once(client, conn):
    call = make_call(conn, "conv_both_keys")
    assert post_signed(client, TRANSCRIPTION, line(call.call_sid)).status_code == 200
    again = post_signed(client, TRANSCRIPTION, line(conversation_id="conv_both_keys"))
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate"
    assert len(lines(conn, "conv_both_keys")) == 1


def test_line_naming_both_a_calls_call_sid_and_its_conversation_id_is_stored_once(client, conn):
    call = make_call(conn, "conv_named_twice")
    both = line(call.call_sid, conversation_id="conv_named_twice")
    first = post_signed(client, TRANSCRIPTION, both)
    second = post_signed(client, TRANSCRIPTION, both)
    assert [r.get_json()["status"] for r in (first, second)] == ["accepted", "duplicate"]
    assert len(lines(conn, "conv_named_twice")) == 1
    assert [d["outcome"] for d in deliveries(conn)] == ["accepted", "duplicate"]


def test_line_naming_one_calls_call_sid_and_anothers_conversation_id_goes_to_the_call_sid(
    client, conn
):
    call = make_call(conn, "conv_by_call_sid")
    make_call(conn, "conv_of_another_call")
    both = line(call.call_sid, conversation_id="conv_of_another_call")
    assert post_signed(client, TRANSCRIPTION, both).get_json()["status"] == "accepted"
    assert len(lines(conn, "conv_by_call_sid")) == 1
    assert lines(conn, "conv_of_another_call") == []


def test_lines_differing_only_in_message_speaker_or_time_are_all_kept(client, conn):
    call = make_call(conn)
    for fields in ({}, {"message": "Other words."}, {"speaker": "user"}, {"timestamp": 1795600001}):
        assert post_signed(client, TRANSCRIPTION, line(call.call_sid, **fields)).status_code == 200
    assert len(lines(conn, call.conversation_id)) == 4


def test_webhook_with_unknown_call_sid_returns_400(client, conn):
    response = post_signed(client, TRANSCRIPTION, line("cs_nobody"))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "unknown_call"
    assert "cs_nobody" in body["details"]["reason"]
    [delivery] = deliveries(conn)
    assert (delivery["outcome"], delivery["http_status"], delivery["call_sid"]) == (
        "unknown_call",
        400,
        "cs_nobody",
    )
    assert conn.execute("SELECT count(*) FROM transcriptions").fetchone()[0] == 0


def test_webhook_with_unknown_conversation_id_returns_400(client, conn):
    response = post_signed(client, TRANSCRIPTION, line(conversation_id="conv_nobody"))
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_call"


def test_webhook_for_call_with_null_conversation_id_returns_400(client, conn):
    call = make_call(conn, conversation_id=None)
    response = post_signed(client, TRANSCRIPTION, line(call.call_sid))
    assert response.status_code == 400
    assert response.get_json()["error"] == "no_conversation_id"
    assert response.get_json()["details"]["delivery_id"] == deliveries(conn)[0]["id"]
    assert deliveries(conn)[0]["outcome"] == "no_conversation_id"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-11-25T10:20:00Z",
        "2026-11-25T11:20:00+01:00",
        "2026-11-25T10:20:00.000+00:00",
        int(AT.timestamp()),
        float(AT.timestamp()),
        str(int(AT.timestamp())),
        f" {int(AT.timestamp())} ",
    ],
)
def test_timestamp_as_iso_with_zone_or_unix_seconds_is_accepted(client, conn, sent):
    call = make_call(conn)
    response = post_signed(client, TRANSCRIPTION, line(call.call_sid, timestamp=sent))
    assert response.status_code == 200, response.get_json()
    assert lines(conn, call.conversation_id)[0][2] == AT


MALFORMED = {
    "not JSON": b"{not json",
    "empty body": b"",
    "JSON array": b"[1, 2]",
    "JSON string": b'"call_sid"',
    "invalid UTF-8": b'{"call_sid": "\xff\xfe"}',
    "NaN": b'{"call_sid": "cs_1", "speaker": "agent", "message": "m", "timestamp": NaN}',
    "timestamp infinite": (
        b'{"call_sid": "cs_1", "speaker": "agent", "message": "m", "timestamp": 1e400}'
    ),
    "nested too deep": b"[" * 20_000 + b"]" * 20_000,
}
MALFORMED_FIELDS = {
    "no call_sid or conversation_id": {"call_sid": None},
    "call_sid a number": {"call_sid": 12},
    "speaker missing": {"speaker": None},
    "speaker not a string": {"speaker": ["agent"]},
    "message empty": {"message": ""},
    "message blank": {"message": "   "},
    "message a number": {"message": 3},
    "message with NUL": {"message": "a\x00b"},
    "message a lone surrogate": {"message": "\ud800"},
    "timestamp missing": {"timestamp": None},
    "timestamp without zone": {"timestamp": "2026-11-25T10:20:00"},
    "timestamp unparseable": {"timestamp": "yesterday at ten"},
    "timestamp a boolean": {"timestamp": True},
    "timestamp far future": {"timestamp": 10**20},
    "timestamp a template left unfilled": {"timestamp": "{{timestamp}}"},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_returns_400_with_a_reason_and_is_recorded(client, conn, body):
    response = post_signed(client, TRANSCRIPTION, body=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "rejected_malformed"
    assert response.get_json()["details"]["reason"]
    [delivery] = deliveries(conn)
    assert (delivery["outcome"], delivery["http_status"]) == ("rejected_malformed", 400)
    assert bytes(delivery["body"]) == body


@pytest.mark.parametrize("fields", MALFORMED_FIELDS.values(), ids=MALFORMED_FIELDS.keys())
def test_body_with_missing_or_wrong_fields_returns_400_naming_the_field(client, conn, fields):
    call = make_call(conn)
    payload = {**line(call.call_sid), **fields}
    response = post_signed(client, TRANSCRIPTION, body=json.dumps(payload).encode())
    assert response.status_code == 400, response.get_json()
    reason = response.get_json()["details"]["reason"]
    assert any(name in reason for name in fields), reason
    assert deliveries(conn)[0]["outcome"] == "rejected_malformed"
    assert lines(conn, call.conversation_id) == []


def test_oversized_body_returns_400_and_is_recorded_truncated(client, conn):
    call = make_call(conn)
    # Over the app-wide MAX_CONTENT_LENGTH too, where Flask alone would answer 413 unrecorded.
    body = body_of(line(call.call_sid, message="x" * (2 * 1024 * 1024)))
    response = post_signed(client, TRANSCRIPTION, body=body)
    assert response.status_code == 400
    assert "over" in response.get_json()["details"]["reason"]
    [delivery] = deliveries(conn)
    assert delivery["outcome"] == "rejected_malformed"
    assert delivery["body_truncated"] is True
    assert delivery["body_size"] == len(body)
    assert bytes(delivery["body"]) == body[: 4 * 1024]


def test_unsigned_webhook_is_accepted_when_no_secret_is_configured(app_config, conn):
    from app import create_app

    app = create_app({**app_config, "ELEVENLABS_WEBHOOK_SECRET": ""})
    try:
        call = make_call(conn)
        response = app.test_client().post(TRANSCRIPTION, json=line(call.call_sid))
        assert response.status_code == 200
        assert deliveries(conn)[0]["signature_valid"] is None
    finally:
        app.extensions["db_pool"].close()


def test_read_back_transcript_is_in_time_order(client, conn):
    call = make_call(conn)
    for second, words in ((9, "third"), (0, "first"), (5, "second")):
        stamp = int(AT.timestamp()) + second
        post_signed(client, TRANSCRIPTION, line(call.call_sid, message=words, timestamp=stamp))
    said = helpers.transcript(conn, call.conversation_id)
    assert [each.message for each in said] == ["first", "second", "third"]


# What the per-line statement names (by call_sid; during a rollback by
# conversation_id; or both, the call_sid first), and the indexes it must use.
NAMED_BY = {
    "call_sid": ("cs_explain", None, ["calls_call_sid_key"]),
    "conversation_id": (None, "conv_explain_7", ["calls_conversation_id_key"]),
    "both": ("cs_explain", "conv_explain_7", ["calls_call_sid_key", "calls_conversation_id_key"]),
}


@pytest.mark.parametrize(
    "call_sid, conversation_id, indexes", NAMED_BY.values(), ids=NAMED_BY.keys()
)
def test_explain_of_the_webhooks_own_statement_uses_indexes_not_a_scan_of_calls(
    conn, call_sid, conversation_id, indexes
):
    conn.execute(
        "INSERT INTO calls (driver_id, conversation_id, phone_number, status) "
        "SELECT g, 'conv_explain_' || g, '+14155550123', 'completed' "
        "FROM generate_series(1, 5000) AS g"
    )
    conn.execute("ANALYZE calls")
    params = {"call_sid": call_sid, "conversation_id": conversation_id}
    params.update(speaker="agent", message="On my way.", timestamp=AT, outcome="accepted")
    received = ("endpoint", "signature_valid", "signature_header", "body", "body_size")
    params.update(dict.fromkeys(received), body_truncated=None, http_status=200)
    explain = "EXPLAIN " + helpers.SAVE_WEBHOOK_LINE
    plan = "\n".join(row[0] for row in conn.execute(explain, params))
    assert "Seq Scan on calls" not in plan, plan
    for index in indexes:
        assert f"Index Scan using {index} on calls" in plan, plan


# --- the signature ---------------------------------------------------------------------


def test_our_signature_is_verified_exactly_as_elevenlabs_sdk_construct_event_verifies(client, conn):
    call = make_call(conn)
    body = body_of(line(call.call_sid, message="Já passei a saída 42 — vinte minutos."))
    header = signature_header(body)
    # The SDK takes the body as text and verifies the UTF-8 of "<t>.<body>".
    assert sdk_construct_event(body.decode(), header, WEBHOOK_SECRET)["call_sid"] == call.call_sid
    timed = webhook_signature.fresh(header, now=time.time(), past=1800, future=300)
    webhook_signature.signed(WEBHOOK_SECRET, timed, body)
    assert post_with_header(client, TRANSCRIPTION, body, header).status_code == 200
    tampered = body.replace(b"42", b"43")
    with pytest.raises(ValueError, match="does not match"):
        sdk_construct_event(tampered.decode(), header, WEBHOOK_SECRET)
    assert post_with_header(client, TRANSCRIPTION, tampered, header).status_code == 401


def test_an_sdk_made_signature_header_is_accepted(client, conn):
    call = make_call(conn)
    body = body_of(line(call.call_sid))
    t = str(int(time.time()))
    digest = webhook_signature.expected_digest(WEBHOOK_SECRET, t, body)
    header = f"t={t},v0={digest}"
    assert sdk_construct_event(body.decode(), header, WEBHOOK_SECRET)
    assert header == signature_header(body, timestamp=int(t))
    assert post_with_header(client, TRANSCRIPTION, body, header).status_code == 200


def _bad_headers(body: bytes) -> dict:
    now = int(time.time())
    good = signature_header(body)
    digest = good.split("v0=")[1]
    return {
        "missing header": None,
        "empty header": "",
        "wrong secret": signature_header(body, secret="wsec_someone_else"),
        "stale timestamp": signature_header(body, timestamp=now - 1800 - 5),
        "future timestamp": signature_header(body, timestamp=now + 300 + 5),
        "no timestamp": f"v0={digest}",
        "no digest": f"t={now}",
        "digest not hex": f"t={now},v0={'z' * 64}",
        "timestamp not a number": f"t=soon,v0={digest}",
        "two timestamps": f"t={now},t={now},v0={digest}",
        "non-ASCII digest": f"t={now},v0={'é' * 64}",
        "garbage": "Bearer something",
    }


BAD_HEADER_CASES = list(_bad_headers(b"").keys())


@pytest.mark.parametrize("case", BAD_HEADER_CASES)
def test_bad_or_missing_signature_returns_401_and_is_recorded(client, conn, case):
    call = make_call(conn)
    body = body_of(line(call.call_sid))
    response = post_with_header(client, TRANSCRIPTION, body, _bad_headers(body)[case])
    assert response.status_code == 401
    assert response.get_json()["error"] == "rejected_signature"
    [delivery] = deliveries(conn)
    assert (delivery["outcome"], delivery["http_status"]) == ("rejected_signature", 401)
    assert delivery["signature_valid"] is False
    assert lines(conn, call.conversation_id) == []


def test_tampered_body_returns_401(client, conn):
    call = make_call(conn)
    body = body_of(line(call.call_sid))
    header = signature_header(body)
    tampered = body.replace(b"L-77", b"L-78")
    assert post_with_header(client, TRANSCRIPTION, tampered, header).status_code == 401
    assert deliveries(conn)[0]["reason"] == "signature does not match the body"


def test_timestamps_just_inside_the_window_are_accepted(client, conn):
    call = make_call(conn)
    now = int(time.time())
    old = post_signed(client, TRANSCRIPTION, line(call.call_sid), timestamp=now - 1790)
    ahead = post_signed(
        client, TRANSCRIPTION, line(call.call_sid, message="later"), timestamp=now + 290
    )
    assert (old.status_code, ahead.status_code) == (200, 200)


@pytest.mark.parametrize("current", ["last", "first"])
def test_a_second_v0_for_a_rotated_secret_is_accepted_in_either_order(client, conn, current):
    call = make_call(conn)
    body = body_of(line(call.call_sid))
    now = int(time.time())
    old = signature_header(body, secret="wsec_old", timestamp=now).split("v0=")[1]
    new = signature_header(body, timestamp=now).split("v0=")[1]
    digests = [old, new] if current == "last" else [new, old]
    header = f"t={now}," + ",".join(f"v0={digest}" for digest in digests)
    assert post_with_header(client, TRANSCRIPTION, body, header).status_code == 200


def test_line_naming_an_unknown_call_sid_and_a_known_conversation_id_is_saved(client, conn):
    make_call(conn, "conv_known")
    payload = line("cs_not_ours", conversation_id="conv_known")
    assert post_signed(client, TRANSCRIPTION, payload).status_code == 200
    assert len(lines(conn, "conv_known")) == 1
