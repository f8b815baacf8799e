"""``GET /driver_data/calls/<call_sid>``: a call, its whole trail, its transcript in order."""

import webhook_signing

from models import calls


def make_call(conn, conversation_id="conv_lookup"):
    return webhook_signing.make_call(conn, conversation_id, twilio_call_sid="CA0001")


def say(conn, conversation_id, speaker, message, at):
    conn.execute(
        'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
        "VALUES (%s, %s, %s, %s)",
        (conversation_id, speaker, message, at),
    )


def test_get_call_returns_the_call_and_its_transcript_in_time_order(client, auth_headers, conn):
    call = make_call(conn)
    # Stored out of order, and two lines in the same second: time, then arrival, decides.
    say(conn, "conv_lookup", "user", "Twenty minutes out.", "2026-11-25T10:20:05Z")
    say(conn, "conv_lookup", "agent", "Where are you?", "2026-11-25T10:20:00Z")
    say(conn, "conv_lookup", "agent", "Thanks.", "2026-11-25T10:20:09Z")
    say(conn, "conv_lookup", "agent", "Bye.", "2026-11-25T10:20:09Z")

    response = client.get(f"/driver_data/calls/{call.call_sid}", headers=auth_headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["call_sid"] == call.call_sid
    assert body["status"] == "initiated"
    assert body["driver_id"] == 7
    assert body["driver_name"] == "Dana"
    assert body["conversation_id"] == "conv_lookup"
    assert body["twilio_call_sid"] == "CA0001"
    assert body["failure_reason"] is None
    for stamp in ("created_at", "updated_at", "api_called_at", "initiated_at"):
        assert body[stamp], stamp
    for stamp in ("failed_at", "completed_at", "call_duration_secs", "termination_reason"):
        assert body[stamp] is None, stamp
    assert [line["message"] for line in body["transcript"]] == [
        "Where are you?",
        "Twenty minutes out.",
        "Thanks.",
        "Bye.",
    ]
    assert body["transcript"][0]["speaker"] == "agent"
    assert body["transcript"][0]["timestamp"].startswith("2026-11-25T10:20:00")


def test_get_call_shows_only_its_own_transcript(client, auth_headers, conn):
    call = make_call(conn)
    other = make_call(conn, conversation_id="conv_other")
    say(conn, "conv_other", "agent", "Not this call.", "2026-11-25T10:20:00Z")
    body = client.get(f"/driver_data/calls/{call.call_sid}", headers=auth_headers).get_json()
    assert body["transcript"] == []
    assert other.call_sid != call.call_sid


def test_get_failed_call_shows_why(client, auth_headers, conn):
    call = calls.create(conn, driver_id=7, phone_number="+14155550123")
    calls.mark_failed(conn, call.call_sid, reason="ElevenLabs refused the connection")
    body = client.get(f"/driver_data/calls/{call.call_sid}", headers=auth_headers).get_json()
    assert body["status"] == "failed"
    assert body["failure_reason"] == "ElevenLabs refused the connection"
    assert body["failed_at"]
    assert body["conversation_id"] is None
    assert body["transcript"] == []


def test_get_legacy_call_without_driver_is_shown(client, auth_headers, conn):
    # A row written by the code before the refactor: no driver, call_sid from the column default.
    call_sid = conn.execute(
        "INSERT INTO calls (conversation_id, phone_number) VALUES ('conv_legacy', NULL) "
        "RETURNING call_sid"
    ).fetchone()[0]
    body = client.get(f"/driver_data/calls/{call_sid}", headers=auth_headers).get_json()
    assert body["driver_id"] is None
    assert body["status"] == "initiated"
    assert body["conversation_id"] == "conv_legacy"


def test_get_unknown_call_is_404(client, auth_headers):
    response = client.get("/driver_data/calls/cs_nosuchcall", headers=auth_headers)
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"] == "call_not_found"
    assert body["details"] == {"call_sid": "cs_nosuchcall"}


def test_get_call_sid_the_database_cannot_hold_is_404(client, auth_headers):
    for odd in ("cs_%00nul", "x" * 5000, "%F0%9F%93%9E"):
        response = client.get(f"/driver_data/calls/{odd}", headers=auth_headers)
        assert response.status_code == 404, odd
        assert response.get_json()["error"] == "call_not_found"


def test_get_call_needs_the_token(client, conn):
    call = make_call(conn)
    response = client.get(f"/driver_data/calls/{call.call_sid}")
    assert response.status_code == 401
    response = client.get(
        f"/driver_data/calls/{call.call_sid}", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
