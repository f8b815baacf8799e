"""``GET /openapi.json``: a valid OpenAPI 3 document that describes every JSON endpoint."""

import re

from openapi_spec_validator import validate

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
