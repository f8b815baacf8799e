"""A call's outcome: read from ElevenLabs' conversation data, kept once per call."""

import copy
from decimal import Decimal

import pytest
import webhook_signing

from models import outcomes
from webhooks import call_outcome

ANSWERS = {
    "eta": {
        "data_collection_id": "eta",
        "value": "10:40",
        "rationale": "Driver said twenty minutes.",
    },
    "load_status": {"data_collection_id": "load_status", "value": "loaded", "rationale": "…"},
    "location": {"data_collection_id": "location", "value": None, "rationale": "Not said."},
}


@pytest.fixture
def data() -> dict:
    """Return the fixture's post-call ``data`` with the driver's answers filled in."""
    envelope = webhook_signing.fixture("post_call_transcription.json")
    envelope["data"]["analysis"]["data_collection_results"] = copy.deepcopy(ANSWERS)
    envelope["data"]["analysis"]["evaluation_criteria_results"] = {
        "eta_given": {"criteria_id": "eta_given", "result": "success", "rationale": "It was."}
    }
    return envelope["data"]


def test_outcome_is_read_from_the_post_call_data(data):
    outcome = call_outcome.of_conversation(data)
    assert outcome.call_successful == "success"
    assert outcome.summary == "Driver is about twenty minutes from the dock on I-80."
    assert outcome.data_collection == {"eta": "10:40", "load_status": "loaded", "location": None}
    assert outcome.evaluation["eta_given"]["result"] == "success"
    assert (outcome.cost_credits, outcome.cost_usd) == (212, None)
    assert outcome.termination_reason == "end_call tool was called."
    assert outcome.duration_secs == 16


def test_dollars_are_credits_at_the_plans_price_when_it_is_known(data):
    outcome = call_outcome.of_conversation(data, usd_per_credit=Decimal("0.0003"))
    assert outcome.cost_usd == Decimal("0.0636")


@pytest.mark.parametrize(
    "data",
    [
        {},
        None,
        [],
        {"analysis": None, "metadata": None},
        {"analysis": "x", "metadata": 3},
        {"analysis": {"call_successful": "maybe", "transcript_summary": "  "}},
        {"analysis": {"data_collection_results": None, "evaluation_criteria_results": []}},
        {"metadata": {"cost": None, "call_duration_secs": None, "termination_reason": None}},
        {"metadata": {"cost": -1, "call_duration_secs": True, "termination_reason": 7}},
        {"metadata": {"cost": "212", "call_duration_secs": "16"}},
        {"metadata": {"cost": float("nan"), "call_duration_secs": float("inf")}},
        {"metadata": {"cost": 2**63, "call_duration_secs": -0.5}},
    ],
)
def test_missing_null_or_odd_fields_are_unknown_not_errors(data):
    assert call_outcome.of_conversation(data) == outcomes.Outcome()


def test_a_duration_in_fractions_of_a_second_is_the_whole_seconds_the_call_row_keeps():
    notes = []
    outcome = call_outcome.of_conversation({"metadata": {"call_duration_secs": 1.5}}, notes=notes)
    assert (outcome.duration_secs, notes) == (2, [])


def test_answers_that_are_not_objects_are_left_out():
    results = {"eta": {"value": 5}, "odd": "10:40", "none": None}
    outcome = call_outcome.of_conversation({"analysis": {"data_collection_results": results}})
    assert outcome.data_collection == {"eta": 5}


def test_unknown_cost_shows_as_null_not_zero(conn, data):
    del data["metadata"]["cost"]
    call = webhook_signing.make_call(conn)
    outcomes.save(conn, call.id, call_outcome.of_conversation(data))
    shown = outcomes.as_json(outcomes.of_call(conn, call.id))
    assert shown["cost"] == {"credits": None, "usd": None}
    assert conn.execute("SELECT cost_credits, cost_usd FROM call_outcomes").fetchone() == (
        None,
        None,
    )


def test_a_call_with_no_outcome_yet_has_every_member_null(conn):
    call = webhook_signing.make_call(conn)
    assert outcomes.as_json(outcomes.of_call(conn, call.id)) == {
        "call_successful": None,
        "summary": None,
        "data_collection": None,
        "termination_reason": None,
        "duration_secs": None,
        "cost": {"credits": None, "usd": None},
    }
    assert outcomes.of_call(conn, call.id + 1) is None


def test_saved_outcome_reads_back_with_the_calls_end(conn, data):
    from models import calls

    call = webhook_signing.make_call(conn)
    calls.mark_completed(
        conn,
        call.call_sid,
        call_duration_secs=16,
        termination_reason="end_call tool was called.",
        twilio_call_sid=None,
    )
    outcome = call_outcome.of_conversation(data, usd_per_credit=Decimal("0.0003"))
    assert outcomes.save(conn, call.id, outcome) is True
    assert outcomes.of_call(conn, call.id) == outcome
    assert outcomes.as_json(outcome)["cost"] == {"credits": 212, "usd": 0.0636}


def test_saving_the_same_outcome_again_changes_nothing(conn, data):
    call = webhook_signing.make_call(conn)
    outcome = call_outcome.of_conversation(data)
    assert outcomes.save(conn, call.id, outcome) is True
    stamp = conn.execute("SELECT updated_at FROM call_outcomes").fetchone()
    assert outcomes.save(conn, call.id, outcome) is False
    assert conn.execute("SELECT updated_at FROM call_outcomes").fetchone() == stamp
    assert conn.execute("SELECT count(*) FROM call_outcomes").fetchone() == (1,)


def test_a_later_partial_outcome_keeps_what_was_known(conn, data):
    call = webhook_signing.make_call(conn)
    outcomes.save(conn, call.id, call_outcome.of_conversation(data))
    later = outcomes.Outcome(call_successful="failure")
    assert outcomes.save(conn, call.id, later) is True
    kept = outcomes.of_call(conn, call.id)
    assert kept.call_successful == "failure"
    assert kept.summary.startswith("Driver is about twenty minutes")
    assert kept.data_collection["eta"] == "10:40" and kept.cost_credits == 212


def test_outcome_of_a_call_that_does_not_exist_is_refused(conn):
    import psycopg

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        outcomes.save(conn, 123_456, outcomes.Outcome(call_successful="success"))
