"""``GET /openapi.json``: the OpenAPI 3 description of every JSON endpoint.

Generated with apispec from the marshmallow schemas that validate and serialise
``/driver_data`` (``api.schemas``), and from ``api.webhook_schemas`` for what no
view validates with marshmallow: the webhook bodies, the error shape, the small answers.
"""

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app

from api import field_descriptions
from api.schemas import CallRequestSchema, CallSchema, CallWithTranscriptSchema
from api.webhook_schemas import (
    POST_CALL_WEBHOOK,
    TRANSCRIPTION_WEBHOOK,
    ErrorSchema,
    HealthSchema,
    WebhookAnswerSchema,
)
from dispatch.openapi import paths as batch_paths

bp = Blueprint("openapi", __name__)

TITLE = "Call-SID service"
VERSION = "1.0.0"
# The call the examples name; a test makes it exist, so the examples reach the success paths.
EXAMPLE_CALL_SID = "cs_0123456789abcdef0123456789abcdef"
EXAMPLE_CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123", "driver_name": "Dana"}
EXAMPLE_LINE = {
    "call_sid": EXAMPLE_CALL_SID,
    "speaker": "agent",
    "message": "Hi Dana, this is dispatch calling about load L-77.",
    "timestamp": "2026-11-25T10:20:00Z",
}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry safely: the same key and body get the first answer, never a second "
    "dial (kept at least 24 h)",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
}


DRIVER_NAME_TWICE = {
    "description": "driver_name both at the top and among the variables",
    "required": ["driver_name", "variables"],
    "properties": {"driver_name": {"type": "string"}, "variables": {"required": ["driver_name"]}},
}


def _json(schema, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int) -> dict:
    words = {
        400: "invalid input; details name each problem",
        401: "missing or wrong credentials",
        404: "no such call",
        409: "suppressed: the number is on the suppression list, nothing written; "
        "idempotency_key_in_progress: the key's first request has no answer yet; "
        "details name its call",
        413: "the body is too large",
        415: "the body was not sent with Content-Type: application/json",
        422: "idempotency_key_reused: the key came with another body",
        502: "ElevenLabs did not confirm the call; it is recorded as failed, and "
        "details.may_have_dialled says whether it may have been placed all the same",
        503: "not_configured; database_unavailable (unreachable) or database_error (it refused "
        "the statement): nothing was written; outcome_not_recorded: ElevenLabs answered but "
        "the outcome could not be written, details.placed says whether the call was placed",
    }
    return {str(status): _json("Error", words[status]) for status in statuses}


def _paths() -> dict:
    """Return every JSON endpoint, by path and method."""
    bearer = [{"bearerAuth": []}]
    signed = [{"elevenLabsSignature": []}]
    webhook_answers = {
        "200": _json("WebhookAnswer", "recorded and settled (saved, duplicate or acknowledged)"),
        **_errors(400, 401),
        "503": _json(
            "Error",
            "database_error: the database refused it for now; recorded, to replay. "
            "database_unavailable: the database is unreachable; not recorded",
        ),
    }
    return {
        "/driver_data/call-elevenlabs": {
            "post": {
                "summary": "Write the call, then ask ElevenLabs to dial the driver",
                "security": bearer,
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": CallRequestSchema,
                            "example": EXAMPLE_CALL_REQUEST,
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        CallSchema,
                        "ElevenLabs accepted; conversation_id may still be null",
                        {"Location": {"schema": {"type": "string"}, "description": "the call"}},
                    ),
                    **_errors(400, 401, 409, 413, 415, 422, 502, 503),
                },
            }
        },
        "/driver_data/calls/{call_sid}": {
            "get": {
                "summary": "A call with its transcript lines in the order they were said",
                "security": bearer,
                "parameters": [
                    {
                        "name": "call_sid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": EXAMPLE_CALL_SID,
                    }
                ],
                "responses": {
                    "200": _json(CallWithTranscriptSchema, "the call"),
                    **_errors(401, 404, 503),
                },
            }
        },
        "/webhooks/elevenlabs/transcription": {
            "post": {
                "summary": "One transcript line, found by call_sid (or conversation_id)",
                "description": "Every delivery is recorded with its outcome, accepted or not.",
                "security": signed,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": "TranscriptionWebhook",
                            "example": EXAMPLE_LINE,
                        }
                    },
                },
                "responses": webhook_answers,
            }
        },
        "/webhooks/elevenlabs/post-call": {
            "post": {
                "summary": "ElevenLabs' post-call webhook: a call's transcript and end, or failure",
                "description": "Every delivery is recorded with its outcome, accepted or not.",
                "security": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "PostCallWebhook"}},
                },
                "responses": webhook_answers,
            }
        },
        "/healthz": {
            "get": {
                "summary": "Whether this process can reach its database",
                "responses": {"200": _json("Health", "the database answers"), **_errors(503)},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            }
        },
        **batch_paths(),
    }


def _anchored(node):
    """Return the document with every pattern anchored as JSON Schema reads it.

    marshmallow matches a Regexp from the start and our patterns end in ``\\Z``;
    JSON Schema searches anywhere and knows no ``\\Z``.
    """
    if isinstance(node, dict):
        return {
            key: _anchor(value) if key == "pattern" and isinstance(value, str) else _anchored(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_anchored(item) for item in node]
    return node


def _anchor(pattern: str) -> str:
    core = pattern.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    return f"^(?:{core})$"


def build() -> dict:
    """Return the OpenAPI document as a dict."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": "Outbound ElevenLabs calls to drivers, and what is said on them."},
    )
    for describe in field_descriptions.ATTRIBUTE_FUNCTIONS:
        plugin.converter.add_attribute_function(describe)
    spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "one of API_TOKENS"},
    )
    spec.components.security_scheme(
        "elevenLabsSignature",
        {
            "type": "apiKey",
            "in": "header",
            "name": "ElevenLabs-Signature",
            "description": 't=<unix seconds>,v0=<hex HMAC-SHA256 of "<t>.<raw body>" '
            "with the webhook secret>",
        },
    )
    for name, schema in (
        ("Error", ErrorSchema),
        ("Health", HealthSchema),
        ("WebhookAnswer", WebhookAnswerSchema),
    ):
        spec.components.schema(name, schema=schema)
    spec.components.schema("TranscriptionWebhook", component=TRANSCRIPTION_WEBHOOK)
    spec.components.schema("PostCallWebhook", component=POST_CALL_WEBHOOK)
    for path, operations in _paths().items():
        spec.path(path=path, operations=operations)
    document = _anchored(spec.to_dict())
    # The schema's one rule across fields (CallRequestSchema._driver_name_once).
    document["components"]["schemas"]["CallRequest"]["not"] = DRIVER_NAME_TWICE
    # A call is always sent whole, unknown values as null: say so, so that a
    # missing field is caught by whoever checks responses against this.
    for name in ("Call", "CallWithTranscript", "TranscriptLine", "Outcome", "Cost"):
        shown = document["components"]["schemas"][name]
        shown["required"] = sorted(shown["properties"])
    return document


@bp.get("/openapi.json")
def openapi_json():
    """Answer with the OpenAPI document, built once per app."""
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build()
    return current_app.extensions["openapi"]
