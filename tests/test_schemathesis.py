"""schemathesis against ``/openapi.json``: generated requests, valid and invalid, never
get a 5xx, and every answer has a documented status, content type and shape.

The real app runs in-process (WSGI) on the test database, with a local HTTP server
standing in for ElevenLabs so a valid call request really is placed. Every
request carries a bearer token, and each webhook body is signed exactly as sent,
so the fuzzing reaches the webhook code behind the signature check instead of
stopping at 401.
"""

import json

import pytest
import schemathesis
from conftest import API_TOKEN
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from webhook_signing import signature_header

from api import openapi

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def app_config(app_config, elevenlabs):
    """Point the app at a local ElevenLabs that places every call, each with its own ids."""
    elevenlabs.answer(fresh_ids=True)
    return {**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url}


# The document /openapi.json serves (test_openapi checks that), loaded at collection
# so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi.build())


def signed(case) -> dict:
    """Return the body bytes and headers that sign a webhook case as ElevenLabs would."""
    if isinstance(case.body, NotSet):
        raw = b""
    elif isinstance(case.body, bytes):  # negative cases: bodies that are not JSON at all
        raw = case.body
    else:
        raw = json.dumps(case.body).encode()
    return {"data": raw, "headers": {"ElevenLabs-Signature": signature_header(raw)}}


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
def test_api_answers_as_described(case, app, example_call):
    extra = {"headers": {"Authorization": f"Bearer {API_TOKEN}"}}
    if case.path.startswith("/webhooks/"):
        extra = signed(case)
    case.call_and_validate(app=app, checks=CHECKS, **extra)
