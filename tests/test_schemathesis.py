"""schemathesis against ``/openapi.json`` with every check (``--checks all``): generated
requests, valid and invalid, never get a 5xx; every answer has a documented status,
content type, headers and shape; what the document allows is accepted and what it
forbids is refused.

The real app runs on a real local HTTP server on the test database, with a local
HTTP server standing in for ElevenLabs so a valid call request really is placed.
Every request carries a bearer token, and each webhook body is signed exactly as
sent, so the fuzzing reaches the webhook code behind the signature check instead
of stopping at 401.
"""

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from credentials import API_TOKEN
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from webhook_signing import signature_header

from api import openapi
from dispatch.schemas import NOT_BEFORE_AHEAD
from elevenlabs.signature import HEADER as SIGNATURE

# The document /openapi.json serves (test_openapi checks that), loaded at collection
# so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi.build())
# Valid requests and invalid ones, and every check schemathesis has (`--checks all`):
# each answer must be the one the document promises.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
schema.config.checks.update(included_check_names=["all"])
# 413 refuses a body too large to read, as the document says: an invalid batch of more
# calls than allowed is larger than the body limit, so it is refused before it is read.
refusals = schema.config.checks.negative_data_rejection
refusals.expected_statuses = [*refusals.expected_statuses, "413"]


@pytest.fixture
def app_config(app_config, elevenlabs):
    """Point the app at a local ElevenLabs that places every call, each with its own ids."""
    elevenlabs.answer(fresh_ids=True)
    return {**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url}


def signed(case) -> dict:
    """Return the signature header of the body as schemathesis sends it, as ElevenLabs signs.

    Nothing when the case itself drops or spoils the header: that must be refused.
    """
    if SIGNATURE not in (case.headers or {}) or case.meta.is_negative_at(ParameterLocation.HEADER):
        return {}
    if isinstance(case.body, NotSet):
        raw = b""
    elif isinstance(case.body, bytes):
        raw = case.body
    else:
        raw = json.dumps(case.body).encode()  # what schemathesis's JSON serializer sends
    return {SIGNATURE: signature_header(raw)}


def follow_the_batch_rules_said_in_words(body) -> None:
    """Make a valid batch keep what JSON Schema cannot say, as its description says it.

    Each phone number at most once, a window that opens before it closes, and a
    ``not_before`` at most a year ahead.
    """
    if isinstance(body.get("calls"), list):
        numbers = [call["phone_number"] for call in body["calls"]]
        body["calls"] = [
            c for i, c in enumerate(body["calls"]) if c["phone_number"] not in numbers[:i]
        ]
    if isinstance(body.get("window"), dict):
        start, end = sorted((body["window"]["start"], body["window"]["end"]))
        body["window"] = (
            {"start": start, "end": end} if start < end else {"start": "00:00", "end": "23:59"}
        )
    if isinstance(body.get("not_before"), str):
        with contextlib.suppress(ValueError, TypeError, OverflowError):  # the server's to refuse
            ahead = datetime.fromisoformat(body["not_before"]) - datetime.now(UTC)
            if ahead > NOT_BEFORE_AHEAD - timedelta(days=1):  # a day's slack for the request
                body["not_before"] = datetime.now(UTC).isoformat()


def name_the_example_call(body) -> None:
    """Make a valid webhook body name the example call: one for no call is 400 by design."""
    if "speaker" in body:  # a transcription line
        body["call_sid"] = openapi.EXAMPLE_CALL_SID
        body.pop("conversation_id", None)
    elif isinstance(body.get("data"), dict):  # a post-call envelope
        variables = {"dynamic_variables": {"call_sid": openapi.EXAMPLE_CALL_SID}}
        body["data"]["conversation_initiation_client_data"] = variables
        body["data"]["conversation_id"] = "conv_example"


@pytest.fixture
def example_call(conn):
    """Make the call the document's examples name, answered by ElevenLabs."""
    conn.execute(
        "INSERT INTO calls (call_sid, driver_id, driver_name, phone_number, conversation_id, "
        "status) VALUES (%s, 42, 'Dana', '+14155550123', 'conv_example', 'initiated')",
        (openapi.EXAMPLE_CALL_SID,),
    )


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    # The app and the database are set up once per operation; each example is a request.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_answers_as_described(case, live_server, example_call):
    valid = case.meta.generation.mode.is_positive
    if not case.path.startswith("/webhooks/"):
        if valid and "Idempotency-Key" in (case.headers or {}):
            # A fresh key: one key over many bodies is the 422 it should be.
            case.headers["Idempotency-Key"] = uuid.uuid4().hex
        if valid and case.path == "/driver_data/call-batches":
            follow_the_batch_rules_said_in_words(case.body)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        case.call_and_validate(base_url=live_server, headers=headers)
        return
    if valid and isinstance(case.body, dict):
        name_the_example_call(case.body)
    case.call_and_validate(base_url=live_server, headers=signed(case))
