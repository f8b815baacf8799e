"""The post-call webhook keeps the call's outcome; ``GET /driver_data/calls/<sid>`` shows it."""

from decimal import Decimal

import pytest
from simulated_calls import call_when, place
from webhook_signing import POST_CALL, deliveries, make_call, post_signed, transcription_event

import config

ANSWERS = {
    "eta": {"data_collection_id": "eta", "value": "10:40", "rationale": "twenty minutes out"},
    "load_status": {"data_collection_id": "load_status", "value": None, "rationale": "not said"},
}


def answered_event(call_sid: str, **metadata) -> dict:
    """Return a post_call_transcription for our call with answers collected."""
    event = transcription_event(call_sid)
    event["data"]["analysis"]["data_collection_results"] = ANSWERS
    event["data"]["metadata"].update(metadata)
    return event


def outcome_of(client, auth_headers, call_sid: str) -> dict:
    response = client.get(f"/driver_data/calls/{call_sid}", headers=auth_headers)
    assert response.status_code == 200
    return response.get_json()["outcome"]


def test_post_call_webhook_stores_the_outcome_shown_by_the_api(client, conn, auth_headers):
    call = make_call(conn, conversation_id="conv_post_call")

    assert post_signed(client, POST_CALL, answered_event(call.call_sid)).status_code == 200

    assert outcome_of(client, auth_headers, call.call_sid) == {
        "call_successful": "success",
        "summary": "Driver is about twenty minutes from the dock on I-80.",
        "data_collection": {"eta": "10:40", "load_status": None},
        "termination_reason": "end_call tool was called.",
        "duration_secs": 16,
        "cost": {"credits": 212, "usd": None},  # no price per credit set
    }


def test_call_without_an_outcome_yet_shows_every_member_null(client, conn, auth_headers):
    call = make_call(conn)

    assert outcome_of(client, auth_headers, call.call_sid) == {
        "call_successful": None,
        "summary": None,
        "data_collection": None,
        "termination_reason": None,
        "duration_secs": None,
        "cost": {"credits": None, "usd": None},
    }


def test_unknown_cost_shows_as_null_not_zero(client, conn, auth_headers):
    call = make_call(conn, conversation_id="conv_post_call")
    event = answered_event(call.call_sid)
    del event["data"]["metadata"]["cost"]

    assert post_signed(client, POST_CALL, event).status_code == 200

    assert outcome_of(client, auth_headers, call.call_sid)["cost"] == {"credits": None, "usd": None}


@pytest.fixture
def priced(app_config):
    """Make the app know the operator's price of a credit (before ``client`` builds it)."""
    app_config["ELEVENLABS_USD_PER_CREDIT"] = Decimal("0.0003")


def test_cost_in_usd_is_credits_at_the_operators_price_per_credit(
    priced, client, conn, auth_headers
):
    call = make_call(conn, conversation_id="conv_post_call")

    assert post_signed(client, POST_CALL, answered_event(call.call_sid)).status_code == 200

    assert outcome_of(client, auth_headers, call.call_sid)["cost"] == {
        "credits": 212,
        "usd": 0.0636,
    }


def test_cost_too_large_to_price_keeps_its_credits_and_answers_200(
    priced, client, conn, auth_headers
):
    call = make_call(conn, conversation_id="conv_post_call")
    event = answered_event(call.call_sid, cost=10**15)

    assert post_signed(client, POST_CALL, event).status_code == 200

    assert outcome_of(client, auth_headers, call.call_sid)["cost"] == {
        "credits": 10**15,
        "usd": None,
    }
    assert "cost in USD ignored" in deliveries(conn)[0]["reason"]


def test_repeated_post_call_webhook_is_a_duplicate_and_keeps_the_outcome(
    client, conn, auth_headers
):
    call = make_call(conn, conversation_id="conv_post_call")
    event = answered_event(call.call_sid)
    first = post_signed(client, POST_CALL, event)

    again = post_signed(client, POST_CALL, event)

    assert (first.get_json()["status"], again.get_json()["status"]) == ("accepted", "duplicate")
    assert outcome_of(client, auth_headers, call.call_sid)["data_collection"]["eta"] == "10:40"


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("transcript_summary", "said \u0000 nothing"),
        ("data_collection_results", {"eta": {"value": "10:\u000040"}}),
        ("data_collection_results", {"eta": {"value": "\ud800"}}),
    ],
)
def test_outcome_field_postgresql_cannot_hold_is_ignored_with_a_note_not_a_500(
    client, conn, auth_headers, where, value
):
    call = make_call(conn, conversation_id="conv_post_call")
    event = answered_event(call.call_sid)
    event["data"]["analysis"][where] = value

    response = post_signed(client, POST_CALL, event)  # NUL and lone surrogates as JSON escapes

    assert response.status_code == 200
    assert f"data.analysis.{where} ignored" in deliveries(conn)[0]["reason"]
    outcome = outcome_of(client, auth_headers, call.call_sid)
    assert outcome["call_successful"] == "success"  # the rest is kept
    assert outcome["summary" if where == "transcript_summary" else "data_collection"] is None


def test_api_shows_the_outcome_of_a_call_the_simulator_completed(service, simulator):
    created = place(service, "+14155550120").json()

    call = call_when(service, created["call_sid"], lambda c: c["status"] == "completed", "its end")

    assert call["outcome"]["call_successful"] == "success"
    assert call["outcome"]["data_collection"] == {
        "eta": "10:40",
        "load_status": "on_time",
        "location": "I-80 exit 42",
    }
    assert call["outcome"]["duration_secs"] == call["call_duration_secs"]
    assert call["outcome"]["cost"]["credits"] > 0
    assert call["outcome"]["cost"]["usd"] is None


@pytest.mark.parametrize("raw", ["-1", "0", "abc", "nan", "inf"])
def test_usd_per_credit_setting_must_be_a_positive_number(raw):
    with pytest.raises(config.ConfigError, match="ELEVENLABS_USD_PER_CREDIT must be a number"):
        config.from_env({"ELEVENLABS_USD_PER_CREDIT": raw})


def test_usd_per_credit_unset_stays_unknown_and_set_is_exact():
    assert config.from_env({})["ELEVENLABS_USD_PER_CREDIT"] is None
    assert config.from_env({"ELEVENLABS_USD_PER_CREDIT": "0.0003"})[
        "ELEVENLABS_USD_PER_CREDIT"
    ] == Decimal("0.0003")
