"""No request body, however odd, reaches a 500; a refused one writes nothing."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elevenlabs.simulator import ANSWER_OK

FIELDS = ["driver_id", "phone_number", "driver_name", "variables", "agent_id"]
# Characters that have broken services like this one: NUL and lone surrogates (which
# PostgreSQL cannot store), newlines, non-ASCII digits, look-alike names.
NASTY = ["\x00", "\ud800", "\n", "\u0663", "+14155550123", "system__x", "call_sid", " "]
nasty_text = st.text(max_size=12) | st.builds(
    "".join, st.lists(st.text(max_size=4) | st.sampled_from(NASTY), min_size=1, max_size=4)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | nasty_text
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(nasty_text | st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=8,
)
VALID = {"driver_id": 42, "phone_number": "+14155550123"}
FIELD_NAMES = [*FIELDS, "agent_phone_number_id", "x"]
# A valid body with one field set to something odd: each field meets the odd values
# alone, without another field's error stopping validation first.
one_odd_field = st.builds(
    lambda name, value: {**VALID, name: value},
    st.sampled_from(FIELD_NAMES),
    nasty_text | json_values,
)
odd_variables = st.builds(
    lambda variables: {**VALID, "variables": variables},
    st.dictionaries(nasty_text, scalars, max_size=4),
)
bodies = st.one_of(json_values, one_odd_field, odd_variables)


@pytest.fixture
def app_config(app_config, elevenlabs):
    """Point the app at a local ElevenLabs that accepts every call."""
    elevenlabs.answer(ANSWER_OK, fresh_ids=True)
    return {**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_any_json_body_is_answered_without_a_500(client, auth_headers, conn, body):
    before = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    response = client.post(
        "/driver_data/call-elevenlabs",
        data=json.dumps(body),
        content_type="application/json",
        headers=auth_headers,
    )
    after = conn.execute("SELECT count(*) FROM calls").fetchone()[0]

    assert response.status_code in (201, 400), (response.status_code, response.get_data())
    assert set(response.get_json()) >= ({"call_sid"} if response.status_code == 201 else {"error"})
    assert after == before + (1 if response.status_code == 201 else 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(call_sid=st.text(max_size=120))
def test_any_call_sid_is_looked_up_without_a_500(client, auth_headers, call_sid):
    response = client.get(f"/driver_data/calls/{call_sid}", headers=auth_headers)
    assert response.status_code in (404, 405, 308), (call_sid, response.status_code)
