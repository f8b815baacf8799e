"""Call creation when ElevenLabs' answer is lost or our code fails: never "not placed" wrongly."""

import psycopg
import pytest
from werkzeug import Response

from elevenlabs.client import ElevenLabsClient
from elevenlabs.simulator import ERROR_422, OUTBOUND_CALL_PATH

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123"}


def post_call(client, headers):
    return client.post("/driver_data/call-elevenlabs", json=CALL_REQUEST, headers=headers)


def only_call(conn) -> dict:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        [row] = cur.execute("SELECT * FROM calls").fetchall()
    return row


def test_a_502_that_may_have_dialled_never_says_the_call_was_not_placed(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer({"detail": "upstream timeout"}, status=504)
    answer = post_call(client, auth_headers).get_json()

    assert answer["details"]["may_have_dialled"] is True
    assert "may have been placed" in answer["message"]
    assert "did not place" not in answer["message"]
    assert "not placed" not in answer["details"]["reason"]
    assert only_call(conn)["status"] == "failed"


def test_a_502_that_did_not_dial_says_so(client, auth_headers, elevenlabs):
    elevenlabs.answer(ERROR_422, status=422)
    answer = post_call(client, auth_headers).get_json()

    assert answer["details"]["may_have_dialled"] is False
    assert "did not place the call" in answer["message"]


def test_a_200_that_cannot_be_decoded_answers_502_may_have_dialled_and_the_row_says_so(
    app, auth_headers, httpserver, conn
):
    # Claims gzip, is not: requests raises ContentDecodingError once the answer arrived.
    # A wire-level fault: a raw server, not the simulator.
    httpserver.expect_request(OUTBOUND_CALL_PATH).respond_with_response(
        Response('{"success": true}', headers={"Content-Encoding": "gzip"})
    )
    app.extensions["elevenlabs"] = ElevenLabsClient(
        httpserver.url_for("").rstrip("/"), "xi_test_key", connect_timeout=2, read_timeout=5
    )
    response = post_call(app.test_client(), auth_headers)

    assert response.status_code == 502
    assert response.get_json()["details"]["may_have_dialled"] is True
    row = only_call(conn)
    assert row["status"] == "failed"
    assert "may still have been placed" in row["failure_reason"]


class BrokenClient:
    """An ElevenLabs client with a bug of ours: it fails after the request may have left."""

    def outbound_call(self, **call):
        raise RuntimeError("a bug of ours after sending")


def test_an_unexpected_error_of_ours_while_calling_elevenlabs_leaves_the_row_failed(
    app, auth_headers, conn
):
    app.extensions["elevenlabs"] = BrokenClient()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production does: a 500
    response = post_call(app.test_client(), auth_headers)

    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    row = only_call(conn)
    assert row["status"] == "failed", "never left 'initiating'"
    assert "may have been placed" in row["failure_reason"]
