"""Structured logs: one JSON line per request, phone numbers masked, secrets never written."""

import json
import logging

import pytest
from credentials import API_TOKEN, WEBHOOK_SECRET
from webhook_signing import TRANSCRIPTION, fixture, make_call, post_signed

from observability import logs

PHONE = "+14155550123"
REQUEST_ID = "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f"


def json_lines(captured: str) -> list[dict]:
    """Return the JSON log lines of captured stderr (and fail on any other line)."""
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def request_lines(captured: str) -> list[dict]:
    return [line for line in json_lines(captured) if line["msg"] == "request"]


def test_each_request_is_one_json_line_with_its_id_route_status_and_latency(client, capsys):
    capsys.readouterr()
    response = client.get("/healthz", headers={"X-Request-ID": REQUEST_ID})
    assert response.headers["X-Request-ID"] == REQUEST_ID
    [line] = request_lines(capsys.readouterr().err)
    assert line["request_id"] == REQUEST_ID
    assert (line["method"], line["endpoint"], line["path"], line["status"]) == (
        "GET",
        "/healthz",
        "/healthz",
        200,
    )
    assert line["level"] == "INFO" and line["logger"] == "http"
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0


@pytest.mark.parametrize(
    "given",
    [None, "", "has spaces", "x" * 200, 'quote"and\\slash', API_TOKEN, "sk_live_0123456789abcdef"],
)
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(client, capsys, given):
    headers = {} if given is None else {"X-Request-ID": given}
    capsys.readouterr()
    response = client.get("/nowhere", headers=headers)
    assert response.status_code == 404
    made = response.headers["X-Request-ID"]
    assert made != given and len(made) == 32
    [line] = request_lines(capsys.readouterr().err)
    assert line["request_id"] == made and line["endpoint"] is None


def test_a_call_creation_logs_no_whole_phone_number_and_names_its_call(
    app_config, elevenlabs, capsys
):
    from app import create_app

    app = create_app({**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url})
    elevenlabs.answer()
    try:
        capsys.readouterr()
        response = app.test_client().post(
            "/driver_data/call-elevenlabs",
            json={"driver_id": 42, "phone_number": PHONE, "driver_name": "Dana"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        captured = capsys.readouterr().err
    finally:
        app.extensions["db_pool"].close()
    assert response.status_code == 201
    call = response.get_json()
    lines = json_lines(captured)
    assert any("created" in line["msg"] for line in lines)  # the call creation's own line
    assert PHONE not in captured and PHONE[1:] not in captured
    [line] = [line for line in lines if line["msg"] == "request"]
    assert line["call_sid"] == call["call_sid"]
    assert line["conversation_id"] == call["conversation_id"]
    assert API_TOKEN not in captured and "xi_test_key" not in captured


def test_a_webhook_request_line_names_the_call_the_delivery_named(client, conn, capsys):
    call = make_call(conn, "conv_logged")
    by_call_sid = fixture("transcription_line.json", call.call_sid)
    by_conversation = {**by_call_sid, "conversation_id": "conv_logged", "message": "rollback"}
    del by_conversation["call_sid"]
    capsys.readouterr()
    assert post_signed(client, TRANSCRIPTION, by_call_sid).status_code == 200
    assert post_signed(client, TRANSCRIPTION, by_conversation).status_code == 200
    first, second = request_lines(capsys.readouterr().err)
    assert first["call_sid"] == call.call_sid
    assert second["conversation_id"] == "conv_logged"
    assert WEBHOOK_SECRET not in json.dumps([first, second])


def test_the_request_line_is_the_line_logging_itself_would_write(client, auth_headers, capsys):
    capsys.readouterr()
    client.get(f"/driver_data/calls/{PHONE}", headers={**auth_headers, "X-Request-ID": REQUEST_ID})
    [written] = request_lines(capsys.readouterr().err)
    # The same fields as they were before cleaning, through a logger and the handler.
    path = f"/driver_data/calls/{PHONE}"
    fields = {key: written[key] for key in ("request_id", "method", "endpoint", "status")}
    fields.update(path=path, latency_ms=written["latency_ms"], call_sid=PHONE)
    logs.log.info("request", extra=fields)
    [through_logging] = request_lines(capsys.readouterr().err)
    assert written["call_sid"] == "+1415•••0123"
    assert {**written, "ts": None} == {**through_logging, "ts": None}


def test_any_logger_has_phone_numbers_masked_and_secrets_cut_out(app, capsys):
    capsys.readouterr()
    library = logging.getLogger("some.library")
    library.warning("dialling %s with key %s", PHONE, "xi_test_key")
    library.warning(
        "secret %s, token %s",
        WEBHOOK_SECRET,
        API_TOKEN,
        extra={"to": PHONE, "by_number": {PHONE: "busy"}, "error": ValueError(f"to {PHONE}")},
    )
    try:
        raise ValueError(f"ElevenLabs refused {PHONE}")
    except ValueError:
        library.exception("failed")
    captured = capsys.readouterr().err
    first, second, third = json_lines(captured)
    assert first["msg"] == "dialling +1415•••0123 with key [redacted]"
    assert second["msg"] == "secret [redacted], token [redacted]" and second["to"] == "+1415•••0123"
    assert second["by_number"] == {"+1415•••0123": "busy"}  # a key is masked too
    assert second["error"] == "to +1415•••0123"  # and any object, as the line writes it
    assert "ValueError: ElevenLabs refused +1415•••0123" in third["exc"]
    for secret in (PHONE, "xi_test_key", WEBHOOK_SECRET, API_TOKEN):
        assert secret not in captured


def test_identifiers_with_digit_runs_are_not_mistaken_for_phone_numbers(app, capsys):
    capsys.readouterr()
    logging.getLogger("calls").warning(
        "call legacy_12345678 and cs_1234567890abcdef1234567890abcdef at 2026-11-25T10:20:00"
    )
    [line] = json_lines(capsys.readouterr().err)
    assert line["msg"] == (
        "call legacy_12345678 and cs_1234567890abcdef1234567890abcdef at 2026-11-25T10:20:00"
    )


def test_an_api_token_sent_as_request_id_is_never_logged(client, capsys):
    hex_token = "0123456789abcdef0123456789abcdef"  # a token that is also UUID-shaped
    app_secrets = logs.redactor().secrets
    app_secrets.add(hex_token)
    try:
        capsys.readouterr()
        response = client.get("/healthz", headers={"X-Request-ID": hex_token})
        captured = capsys.readouterr().err
    finally:
        app_secrets.discard(hex_token)
    assert response.headers["X-Request-ID"] != hex_token
    assert hex_token not in captured


def test_a_phone_number_sent_as_a_call_sid_is_logged_masked(client, auth_headers, capsys):
    capsys.readouterr()
    assert client.get(f"/driver_data/calls/{PHONE}", headers=auth_headers).status_code == 404
    captured = capsys.readouterr().err
    [line] = request_lines(captured)
    assert line["call_sid"] == "+1415•••0123"
    assert PHONE not in captured and PHONE[1:] not in captured


def test_a_driver_id_of_seven_digits_is_logged_whole(app_config, elevenlabs, capsys):
    from app import create_app

    app = create_app({**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url})
    elevenlabs.answer()
    try:
        capsys.readouterr()
        app.test_client().post(
            "/driver_data/call-elevenlabs",
            json={"driver_id": 1234567, "phone_number": PHONE},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        captured = capsys.readouterr().err
    finally:
        app.extensions["db_pool"].close()
    assert any("for driver 1234567 to +1415•••0123" in line["msg"] for line in json_lines(captured))


def test_a_field_holding_a_list_is_cleaned_inside_and_its_numbers_kept(app, capsys):
    capsys.readouterr()
    logging.getLogger("some.library").warning("dialled", extra={"tried": [PHONE, 123456789012]})
    [line] = json_lines(capsys.readouterr().err)
    assert line["tried"] == ["+1415•••0123", 123456789012]
