"""Arbitrary bodies and headers at both webhook endpoints: never a 500, every one recorded."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_signing import POST_CALL, TRANSCRIPTION, fixture, make_call, signature_header

KNOWN = {}  # call_sids of the calls the test creates, filled by the fixture

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),  # NaN and infinities included: json.dumps writes them, we must refuse them
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def mostly(good, junk=json_values, weight=8):
    """Return a strategy drawing from ``good`` ``weight`` times in ``weight + 1``, else junk."""
    # one_of picks its branches evenly, so the weight comes from a drawn number.
    return st.sampled_from(range(weight + 1)).flatmap(lambda n: junk if n == weight else good)


def call_sids():
    """Return a strategy of call_sids: the test's own calls, mostly, or anything."""
    return mostly(st.sampled_from(["known", "known", "no_conversation"]).map(KNOWN.get))


words = st.text(min_size=1, max_size=40)  # NUL, surrogates, RTL, emoji: all of unicode
recent = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
unix_seconds = st.one_of(
    st.integers(min_value=1_700_000_000, max_value=1_900_000_000),
    st.floats(min_value=1_700_000_000, max_value=1_900_000_000),
)
timestamps = mostly(
    st.one_of(
        unix_seconds,
        unix_seconds.map(str),
        recent.map(lambda moment: moment.replace(tzinfo=UTC).isoformat()),
    ),
    st.one_of(
        json_values,
        st.integers(min_value=-(10**12), max_value=10**12),
        st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{1,10})?\Z"),
        st.datetimes().map(lambda moment: moment.isoformat()),
        st.datetimes().map(lambda moment: moment.replace(tzinfo=UTC).isoformat()),
    ),
    weight=4,
)
line_bodies = st.fixed_dictionaries(
    {
        "call_sid": st.deferred(call_sids),
        "speaker": mostly(words),
        "message": mostly(words),
        "timestamp": timestamps,
    },
    optional={"conversation_id": mostly(st.sampled_from(["conv_fuzz", "conv_other"]))},
)
turns = st.fixed_dictionaries(
    {
        "role": mostly(st.sampled_from(["agent", "user"]) | words),
        "message": st.one_of(words, words, st.none(), json_values),
        "time_in_call_secs": mostly(st.floats(min_value=0, max_value=3600) | st.integers()),
    }
)


@st.composite
def post_call_bodies(draw):
    """Return a post-call envelope shaped like the real one, its values drawn."""
    event = fixture("post_call_transcription.json")
    variables = event["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    variables["call_sid"] = draw(st.deferred(call_sids))
    event["type"] = draw(
        mostly(
            st.sampled_from(
                ["post_call_transcription", "call_initiation_failure", "post_call_audio"]
            )
        )
    )
    data = event["data"]
    data["conversation_id"] = draw(mostly(st.sampled_from(["conv_fuzz", "conv_new"]) | words))
    data["transcript"] = draw(mostly(st.lists(turns, max_size=4)))
    data["failure_reason"] = draw(mostly(words | st.none()))
    metadata = data["metadata"]
    metadata["start_time_unix_secs"] = draw(timestamps)
    metadata["call_duration_secs"] = draw(mostly(st.integers(min_value=-5, max_value=10**9)))
    metadata["termination_reason"] = draw(mostly(words))
    metadata["phone_call"]["call_sid"] = draw(mostly(words))
    return event


def paths(node, prefix=()):
    """Return every path to a value inside a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict | list):
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            found += paths(child, (*prefix, key))
    return found


@st.composite
def mutated(draw, name):
    """Return a real fixture for a known call with one value replaced or removed."""
    document = fixture(name, KNOWN["known"])
    if name == "post_call_transcription.json":
        document["data"]["conversation_id"] = "conv_fuzz"
    *parents, last = draw(st.sampled_from(paths(document)))
    node = document
    for key in parents:
        node = node[key]
    if isinstance(node, dict) and draw(st.booleans()):
        del node[last]
    else:
        node[last] = draw(json_values)
    return document


def encoded(documents, name):
    """Return a strategy of bodies: shaped documents mostly, else mutated fixtures or junk."""
    junk = st.one_of(mutated(name), mutated(name), json_values).map(_bytes)
    return mostly(documents.map(_bytes), st.one_of(junk, st.binary(max_size=300)), weight=2)


def _bytes(document) -> bytes:
    # json.dumps escapes lone surrogates as \\udxxx, which must reach the server as such.
    return json.dumps(document).encode()


# Header values travel as latin-1 without line breaks; anything else is the client's error.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=120)
signatures = mostly(
    st.just("valid"),
    st.one_of(
        st.none(),
        header_text,
        st.integers(min_value=0, max_value=10**11).map(lambda t: f"t={t},v0={'a' * 64}"),
    ),
    weight=3,
)


@pytest.fixture
def known_calls(conn):
    """Create the calls the generated bodies may name."""
    KNOWN["known"] = make_call(conn, "conv_fuzz").call_sid
    KNOWN["no_conversation"] = make_call(conn, conversation_id=None).call_sid


def _post(client, conn, path, body, signature, extra_header):
    before = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]
    headers = {"Content-Type": "application/json"}
    if signature == "valid":
        headers["ElevenLabs-Signature"] = signature_header(body)
    elif signature is not None:
        headers["ElevenLabs-Signature"] = signature
    if extra_header:
        headers["X-Fuzz"] = extra_header
    response = client.post(path, data=body, headers=headers)
    assert response.status_code in (200, 400, 401), (response.status_code, response.data)
    assert response.is_json
    after = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]
    assert after == before + 1, "every delivery is recorded"


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    body=encoded(line_bodies, "transcription_line.json"), signature=signatures, extra=header_text
)
def test_transcription_webhook_never_answers_500(client, conn, known_calls, body, signature, extra):
    _post(client, conn, TRANSCRIPTION, body, signature, extra)


@FUZZ
@given(
    body=encoded(post_call_bodies(), "post_call_transcription.json"),
    signature=signatures,
    extra=header_text,
)
def test_post_call_webhook_never_answers_500(client, conn, known_calls, body, signature, extra):
    _post(client, conn, POST_CALL, body, signature, extra)
