"""``GET /openapi.json``: a valid OpenAPI 3 document that describes every JSON endpoint."""

import functools
import re
import sys

import pytest
from jsonschema import Draft202012Validator
from marshmallow import ValidationError
from openapi_spec_validator import validate

from api import openapi
from api.phone_numbers import E164
from api.schemas import CallRequestSchema
from dispatch.schemas import BatchCallSchema, SuppressionRequestSchema
from elevenlabs import payloads

# What answers with something other than JSON (Prometheus text, the console's HTML)
# is not in the document.
NOT_JSON = {"/metrics"}
NOT_JSON_PREFIX = "/ops/"


def test_openapi_document_validates(client):
    response = client.get("/openapi.json")  # no credentials: integrators read it first
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    validate(document)


def test_every_json_route_is_described_with_its_methods(app, client):
    described = client.get("/openapi.json").get_json()["paths"]
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            routes.setdefault(path, set()).update(
                m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}
            )
    json_routes = {p for p in routes if p not in NOT_JSON and not p.startswith(NOT_JSON_PREFIX)}
    assert json_routes == set(described)
    for path, operations in described.items():
        assert set(operations) == routes[path], path


def test_errors_share_one_described_shape(client):
    document = client.get("/openapi.json").get_json()
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message", "details"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_auth_schemes_are_bearer_for_the_api_and_the_signature_header_for_webhooks(client):
    document = client.get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    signature = schemes["elevenLabsSignature"]
    assert (signature["type"], signature["in"], signature["name"]) == (
        "apiKey",
        "header",
        "ElevenLabs-Signature",
    )
    paths = document["paths"]
    assert paths["/driver_data/call-elevenlabs"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/driver_data/calls/{call_sid}"]["get"]["security"] == [{"bearerAuth": []}]
    for webhook in ("transcription", "post-call"):
        operation = paths[f"/webhooks/elevenlabs/{webhook}"]["post"]
        assert operation["security"] == [{"elevenLabsSignature": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_call_request_is_described_from_the_validating_schema(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    request = schemas["CallRequest"]
    assert set(request["required"]) == {"driver_id", "phone_number"}
    assert request["additionalProperties"] is False
    # Anchored as JSON Schema reads a pattern, with no Python-only \Z.
    assert request["properties"]["phone_number"]["pattern"] == r"^(?:\+[1-9][0-9]{6,14})$"
    assert request["properties"]["variables"]["maxProperties"] == 32
    assert "transcript" in schemas["CallWithTranscript"]["required"]


# What the document says of a value, and what the server does with it, agree: each
# rule below was a disagreement schemathesis found (positive or negative data).


@functools.cache
def built() -> dict:
    return openapi.build()


def document_accepts(name: str, value, *path: str) -> bool:
    """Return whether the document's schema ``name`` (or a property of it) allows ``value``."""
    document = built()
    schema = {"$ref": "#/components/schemas/" + name, "components": document["components"]}
    for step in path:
        schema = {**schema, "$ref": f"{schema['$ref']}/properties/{step}"}
    checker = Draft202012Validator.FORMAT_CHECKER
    return Draft202012Validator(schema, format_checker=checker).is_valid(value)


def server_accepts(read, value) -> bool:
    try:
        read(value)
    except (payloads.Rejected, ValidationError):
        return False
    return True


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-25T10:20:00Z",
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:30:00+01:00",  # 1999 in UTC
        "2099-12-31T23:00:00-02:00",  # 2100 in UTC
        "2099-12-31T23:59:59.999999Z",
        "2100-01-01T00:00:00Z",
        "2026-11-25t10:20:00z",
        "1764066000",
        " 1764066000.5 ",
        "1764066000\x1e",  # white space to str.strip, not to float(): was a 500
        946684799.9999995,  # rounds up to the first microsecond of 2000
        946684799.9999994,
        4102444799.999999,
        4102444799.9999995,  # rounds up to 2100
        1e300,
    ],
)
def test_the_document_states_the_transcription_timestamp_range(timestamp):
    documented = document_accepts("TranscriptionWebhook", timestamp, "timestamp")
    assert documented == server_accepts(payloads.timestamp, timestamp)


@pytest.mark.parametrize(
    "name", ["load_id", "_x", "L2", "2nd", "load-id", "system__time", "call_sid", "n" * 65, "é"]
)
def test_the_document_states_the_variable_name_rule(name):
    request = {"driver_id": 1, "phone_number": "+14155550123", "variables": {name: "x"}}
    documented = document_accepts("CallRequest", request)
    assert documented == server_accepts(CallRequestSchema().load, request)


@pytest.mark.parametrize("value", [9007199254740991, 9007199254740992, 2.5, "x" * 501, "a\x00b"])
def test_the_document_states_the_variable_value_rule(value):
    request = {"driver_id": 1, "phone_number": "+14155550123", "variables": {"v": value}}
    documented = document_accepts("CallRequest", request)
    assert documented == server_accepts(CallRequestSchema().load, request)


@pytest.mark.parametrize(
    "name", ["Dana", "Zoë O'Brien", "  ", "Dana\x82", "\U000b6a7d", "a\u200bb"]
)
def test_the_document_states_that_driver_names_are_printable(name):
    request = {"driver_id": 1, "phone_number": "+14155550123", "driver_name": name}
    documented = document_accepts("CallRequest", request)
    assert documented == server_accepts(CallRequestSchema().load, request)


def test_an_integer_written_with_a_zero_fraction_is_the_integer_the_document_allows():
    request = {"driver_id": 42.0, "phone_number": "+14155550123"}
    assert document_accepts("CallRequest", request)
    assert CallRequestSchema().load(request)["driver_id"] == 42


def post_call(event_type: str, **data) -> dict:
    return {"type": event_type, "data": {"conversation_id": "conv_1", **data}}


@pytest.mark.parametrize(
    ("envelope", "acknowledged"),
    [
        ({"type": "post_call_audio"}, True),  # acknowledged, whatever it holds
        ({"type": "post_call_audio", "data": "MBs of audio"}, True),
        ({"type": "post_call_transcription"}, False),  # a known type needs its data
        ({"type": "a\x00b", "data": {}}, False),
        ({"type": "  ", "data": {}}, False),
        ({"type": "\x1d", "data": {}}, False),  # white space to str.strip, not to \s
        (post_call("post_call_transcription", conversation_id=None), False),  # names no call
        (post_call("call_initiation_failure", transcript="not read"), True),
    ],
)
def test_the_document_states_which_post_call_envelopes_are_refused(envelope, acknowledged):
    assert document_accepts("PostCallWebhook", envelope) is acknowledged


def test_the_documents_white_space_is_what_the_server_strips():
    spaces = {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}
    documented = re.compile(f"[{payloads.SPACE}]")
    assert {c for c in map(chr, range(sys.maxunicode + 1)) if documented.fullmatch(c)} == spaces


def test_the_document_allows_a_null_conversation_id_beside_a_call_sid():
    line = {**openapi.EXAMPLE_LINE, "conversation_id": None}
    assert document_accepts("TranscriptionWebhook", line)
    assert payloads.line_delivery(line).conversation_id is None


@pytest.mark.parametrize("zone", ["America/Chicago", "UTC", "", "Mars/Olympus", "/etc/passwd"])
def test_the_document_names_the_time_zones_a_batch_may_give(zone):
    call = {"driver_id": 1, "phone_number": "+14155550123", "timezone": zone}
    documented = document_accepts("BatchCall", call)
    assert documented == server_accepts(BatchCallSchema().load, call)


@pytest.mark.parametrize("number", ["+14155550123", "0", "14155550123", "+1415555012345678"])
def test_the_document_states_that_a_suppressed_number_is_e164_in_the_path(number):
    operation = built()["paths"]["/driver_data/suppressions/{phone_number}"]["put"]
    pattern = operation["parameters"][0]["schema"]["pattern"]
    assert bool(re.search(pattern, number)) == server_accepts(e164, number)


@pytest.mark.parametrize("reason", ["moved away", "", "\x18[\x00t"])
def test_the_document_states_that_a_suppression_reason_holds_no_nul(reason):
    body = {"reason": reason}
    documented = document_accepts("SuppressionRequest", body)
    assert documented == server_accepts(SuppressionRequestSchema().load, body)


def e164(number: str) -> None:
    if not E164.match(number):
        raise ValidationError("not E.164")
