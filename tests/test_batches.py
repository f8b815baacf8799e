"""``/driver_data/call-batches``: a batch is validated whole, stored, shown and cancelled."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from batch_support import batch_body, numbers

from app import create_app
from dispatch.schemas import MAX_CALLS

BATCHES = "/driver_data/call-batches"


def batch_rows(conn) -> tuple[int, int]:
    """Return how many batches and entries are stored."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM call_batches), (SELECT count(*) FROM call_batch_entries)"
    ).fetchone()


def test_batch_is_accepted_with_every_driver_queued(client, conn, auth_headers):
    response = client.post(
        BATCHES,
        json=batch_body(numbers(3), window={"start": "00:00", "end": "23:59"}),
        headers=auth_headers,
    )
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["batch_id"].startswith("cb_")
    assert answer["status"] == "pending"
    assert answer["counts"]["queued"] == 3
    assert response.headers["Location"].endswith(answer["batch_id"])
    shown = client.get(response.headers["Location"], headers=auth_headers).get_json()
    assert [e["phone_number"] for e in shown["entries"]] == numbers(3)
    assert shown["window"] == {"start": "00:00", "end": "23:59"}
    assert shown["redial"] == {"busy": 0, "no-answer": 0, "spacing_minutes": 30}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"calls": batch_body(["+14155550100", "+14155550100"])["calls"]}, "calls"),
        (
            {
                "calls": [
                    {"driver_id": 1, "phone_number": "+14155550100", "timezone": "Mars/Olympus"}
                ]
            },
            "calls",
        ),
        (
            {
                "calls": [
                    {"driver_id": 1, "phone_number": "+14155550100", "timezone": "/etc/passwd"}
                ]
            },
            "calls",
        ),
        (
            {"calls": [{"driver_id": 1, "phone_number": "+14155550100", "timezone": "localtime"}]},
            "calls",
        ),
        (
            {"calls": [{"driver_id": 1, "phone_number": "+14155550100", "timezone": "Factory"}]},
            "calls",
        ),
        ({"window": {"start": "20:00", "end": "08:00"}}, "window"),
        ({"window": {"start": "8am", "end": "20:00"}}, "window"),
        ({"window": {"start": "08:00", "end": "24:00"}}, "window"),
        ({"redial": {"busy": -1}}, "redial"),
        ({"not_before": "2026-06-10T08:00:00"}, "not_before"),
        ({"not_before": "9999-12-31T23:30:00-05:00"}, "not_before"),
        (
            {
                "not_before": "9999-12-31T23:59:59+00:00",
                "window": {"start": "00:00", "end": "00:01"},
            },
            "not_before",
        ),
        ({"calls": []}, "calls"),
        ({"name": "night\x00shift"}, "name"),
    ],
    ids=[
        "number_twice",
        "unknown_time_zone",
        "time_zone_path",
        "time_zone_localtime_of_the_host",
        "time_zone_factory_without_an_offset",
        "window_ends_before_it_starts",
        "window_not_hh_mm",
        "window_hour_24",
        "negative_redial",
        "not_before_without_zone",
        "not_before_in_year_9999",
        "not_before_at_the_end_of_year_9999",
        "no_calls",
        "name_with_nul",
    ],
)
def test_bad_batch_returns_400_and_writes_nothing(client, conn, auth_headers, change, field):
    response = client.post(BATCHES, json={**batch_body(numbers(2)), **change}, headers=auth_headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "validation_error"
    assert field in response.get_json()["details"]
    assert batch_rows(conn) == (0, 0)


def test_batch_with_a_number_twice_names_both_places(client, conn, auth_headers):
    body = batch_body(["+14155550100", "+14155550111", "+14155550100"])
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["details"]["calls"] == {
        "2": {"phone_number": ["Also given at calls[0]."]}
    }


def test_batch_over_10000_calls_returns_400_and_writes_nothing(client, conn, auth_headers):
    body = batch_body(numbers(MAX_CALLS + 1))
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 400
    assert "calls" in response.get_json()["details"]
    assert batch_rows(conn) == (0, 0)


def test_batch_too_large_to_read_returns_413_and_writes_nothing(client, conn, auth_headers):
    # More calls than allowed, each with a long variable: past the batch's 16 MiB body
    # limit, so it is refused before it is read, not validated into a 400.
    call = {
        "driver_id": 1,
        "phone_number": "+1000000",
        "driver_name": "Dana Smith",
        "timezone": "America/Chicago",
        "variables": {"A": "x" * 1700},
    }
    body = {"name": "Tuesday", "calls": [call] * (MAX_CALLS + 1)}
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert batch_rows(conn) == (0, 0)


def test_batch_not_before_more_than_a_year_ahead_returns_400_and_writes_nothing(
    client, conn, auth_headers
):
    later = (datetime.now(UTC) + timedelta(days=367)).isoformat()
    response = client.post(
        BATCHES, json=batch_body(numbers(2), not_before=later), headers=auth_headers
    )
    assert response.status_code == 400, response.get_json()
    assert "at most a year" in response.get_json()["details"]["not_before"][0]
    assert batch_rows(conn) == (0, 0)


def test_batch_not_before_a_time_with_a_16_hour_offset_is_stored(client, conn, auth_headers):
    # Python allows offsets up to 24 h, PostgreSQL's timestamptz text only up to 15:59.
    far_east = timezone(timedelta(hours=16, minutes=34))
    soon = (datetime.now(UTC) + timedelta(days=300)).astimezone(far_east).isoformat()
    body = batch_body(numbers(2), not_before=soon)
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 202, response.get_json()
    assert batch_rows(conn) == (1, 2)


def test_batch_of_10000_calls_is_stored(client, conn, auth_headers):
    body = batch_body([f"+1415{i:07d}" for i in range(MAX_CALLS)])
    for call in body["calls"]:  # as dispatch sends them: over 1 MiB in all
        call.update(driver_name="Dana Smith", timezone="America/Chicago", variables={"A": "1"})
    response = client.post(BATCHES, json=body, headers=auth_headers)
    assert response.status_code == 202, response.get_json()
    assert batch_rows(conn) == (1, MAX_CALLS)


def test_batch_body_that_is_not_an_object_returns_400(client, auth_headers):
    response = client.post(BATCHES, json=[1, 2], headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"


def test_unknown_batch_returns_404(client, auth_headers):
    for path in (f"{BATCHES}/cb_nope", f"{BATCHES}/{'x' * 500}", f"{BATCHES}/cb%00"):
        assert client.get(path, headers=auth_headers).status_code == 404
        assert client.post(f"{path}/cancel", headers=auth_headers).status_code == 404


def test_batches_need_the_bearer_token(client):
    assert client.post(BATCHES, json=batch_body(numbers(1))).status_code == 401
    assert client.get(f"{BATCHES}/cb_nope").status_code == 401


@pytest.mark.parametrize("unset", ["ELEVENLABS_AGENT_ID", "ELEVENLABS_API_KEY"])
def test_batch_on_a_service_with_no_agent_configured_is_503_and_stores_nothing(
    app_config, conn, auth_headers, unset
):
    app = create_app({**app_config, unset: ""})
    try:
        response = app.test_client().post(
            "/driver_data/call-batches", json=batch_body(numbers(3)), headers=auth_headers
        )
    finally:
        app.extensions["db_pool"].close()
    assert response.status_code == 503
    assert response.get_json()["error"] == "not_configured"
    assert unset in response.get_json()["message"]
    assert conn.execute("SELECT count(*) FROM call_batches").fetchone()[0] == 0
