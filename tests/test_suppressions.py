"""Suppression: a number on the list is never dialled, by the single-call API or a batch."""

from datetime import timedelta

import pytest
from batch_support import NOON_CHICAGO, batch_body, end_call, entry_states

from dispatch.rounds import run_round

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

SUPPRESSIONS = "/driver_data/suppressions"
NUMBER = "+14155550123"


def test_suppressed_number_is_listed_and_lifted(client, auth_headers):
    put = client.put(
        f"{SUPPRESSIONS}/{NUMBER}", json={"reason": "asked not to be called"}, headers=auth_headers
    )
    assert put.status_code == 201
    assert put.get_json()["reason"] == "asked not to be called"
    assert client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers).status_code == 200
    listed = client.get(SUPPRESSIONS, headers=auth_headers).get_json()["suppressions"]
    assert [s["phone_number"] for s in listed] == [NUMBER]
    assert client.delete(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers).status_code == 204
    assert client.delete(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers).status_code == 404
    assert client.get(SUPPRESSIONS, headers=auth_headers).get_json() == {"suppressions": []}


@pytest.mark.parametrize("number", ["4155550123", "+0123", "+1415555012a", "%2B1415%0A5550123"])
def test_suppression_of_a_number_not_in_e164_returns_400(client, conn, auth_headers, number):
    response = client.put(f"{SUPPRESSIONS}/{number}", headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"
    assert conn.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0


def test_suppression_with_a_bad_body_returns_400(client, conn, auth_headers):
    for body in ({"reason": 7}, {"why": "x"}, ["x"], {"reason": "no\x00thanks"}):
        response = client.put(f"{SUPPRESSIONS}/{NUMBER}", json=body, headers=auth_headers)
        assert response.status_code == 400, body
    assert conn.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0


def test_single_call_to_a_suppressed_number_returns_409_with_nothing_dialled(
    client, conn, auth_headers, elevenlabs
):
    elevenlabs.answer()
    client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers)
    response = client.post(
        "/driver_data/call-elevenlabs",
        json={"driver_id": 7, "phone_number": NUMBER},
        headers=auth_headers,
    )
    assert response.status_code == 409
    assert response.get_json()["error"] == "suppressed"
    assert elevenlabs.received == []
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


def test_suppressed_number_in_a_batch_is_never_dialled(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    later = "+14155550124"
    client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers)
    body = batch_body([NUMBER, later, "+14155550125"])
    response = client.post("/driver_data/call-batches", json=body, headers=auth_headers)
    assert response.get_json()["counts"]["suppressed"] == 1
    client.put(f"{SUPPRESSIONS}/{later}", headers=auth_headers)  # after the batch was written
    assert run_round(make_worker(), NOON_CHICAGO) == 1
    assert [r.body["to_number"] for r in elevenlabs.received] == ["+14155550125"]
    assert entry_states(conn) == {
        NUMBER: "suppressed",
        later: "suppressed",
        "+14155550125": "in_call",
    }


def test_number_suppressed_after_its_batch_was_written_shows_as_suppressed_at_once(
    client, auth_headers, elevenlabs
):
    body = batch_body([NUMBER, "+14155550125"])
    batch_id = client.post("/driver_data/call-batches", json=body, headers=auth_headers).get_json()[
        "batch_id"
    ]
    client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers)
    # Before any round: the PUT itself marks the waiting entry, not the next dial attempt.
    shown = client.get(f"/driver_data/call-batches/{batch_id}", headers=auth_headers).get_json()
    assert shown["counts"]["suppressed"] == 1
    assert elevenlabs.received == []


def test_number_suppressed_during_a_busy_call_is_not_redialled(
    client, conn, auth_headers, elevenlabs, make_worker
):
    elevenlabs.answer(fresh_ids=True)
    body = batch_body([NUMBER], redial={"busy": 2, "spacing_minutes": 0})
    assert (
        client.post("/driver_data/call-batches", json=body, headers=auth_headers).status_code == 202
    )
    worker = make_worker()
    assert run_round(worker, NOON_CHICAGO) == 1
    [call_sid] = [row[0] for row in conn.execute("SELECT call_sid FROM calls")]
    # The driver asks not to be called while the call rings: the entry is in_call, so the
    # PUT leaves it alone and only the check at dial time can stop the busy redial.
    assert entry_states(conn) == {NUMBER: "in_call"}
    assert client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers).status_code == 201
    end_call(client, conn, call_sid, "busy")
    dialled = [run_round(worker, NOON_CHICAGO + timedelta(minutes=m)) for m in (0, 1, 60)]
    assert dialled == [0, 0, 0]
    assert len(elevenlabs.received) == 1
    assert entry_states(conn) == {NUMBER: "suppressed"}


def test_batch_of_only_suppressed_numbers_completes_without_a_dial(
    client, conn, auth_headers, elevenlabs, make_worker
):
    client.put(f"{SUPPRESSIONS}/{NUMBER}", headers=auth_headers)
    response = client.post(
        "/driver_data/call-batches", json=batch_body([NUMBER]), headers=auth_headers
    )
    run_round(make_worker(), NOON_CHICAGO)
    batch_id = response.get_json()["batch_id"]
    shown = client.get(f"/driver_data/call-batches/{batch_id}", headers=auth_headers).get_json()
    assert shown["status"] == "completed"
    assert elevenlabs.received == []
