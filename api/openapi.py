"""``GET /openapi.json``: the OpenAPI 3.1 description of every JSON endpoint.

Generated with apispec from the marshmallow schemas that validate and serialise
``/driver_data`` (``api.schemas``, ``dispatch.schemas``), and from ``api.webhook_schemas``
for what no view validates with marshmallow: the webhook bodies, the error shape, the
small answers.
"""

import functools
import itertools
import sys

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app

from api.phone_numbers import E164
from api.schemas import (
    VARIABLES_SCHEMA,
    CallRequestSchema,
    CallSchema,
    CallWithTranscriptSchema,
    DynamicVariables,
    printable_name,
)
from api.webhook_schemas import (
    POST_CALL_WEBHOOK,
    TRANSCRIPTION_WEBHOOK,
    ErrorSchema,
    HealthSchema,
    WebhookAnswerSchema,
)
from dispatch.schemas import (
    BatchRequestSchema,
    BatchSchema,
    SuppressionRequestSchema,
    SuppressionSchema,
)

bp = Blueprint("openapi", __name__)

# The call the examples name; a test makes it exist, so the examples reach the success paths.
EXAMPLE_CALL_SID = "cs_0123456789abcdef0123456789abcdef"
EXAMPLE_CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123", "driver_name": "Dana"}
EXAMPLE_LINE = {
    "call_sid": EXAMPLE_CALL_SID,
    "speaker": "agent",
    "message": "Hi Dana, this is dispatch calling about load L-77.",
    "timestamp": "2026-11-25T10:20:00Z",
}
EXAMPLE_BATCH = {
    "name": "Tuesday check-in",
    "calls": [
        {"driver_id": 42, "phone_number": "+14155550123", "timezone": "America/Chicago"},
        {"driver_id": 43, "phone_number": "+13125550199", "driver_name": "Sam"},
    ],
    "window": {"start": "08:00", "end": "20:00"},
    "redial": {"busy": 1, "no-answer": 1, "spacing_minutes": 30},
}

BEARER = [{"bearerAuth": []}]
SIGNED = [{"elevenLabsSignature": []}]
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry safely: the same key and body get the first answer, never a second "
    "dial (kept at least 24 h)",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
}
# The schema's one rule across fields (CallRequestSchema._driver_name_once).
DRIVER_NAME_TWICE = {
    "description": "driver_name both at the top and among the variables",
    "required": ["driver_name", "variables"],
    "properties": {"driver_name": {"type": "string"}, "variables": {"required": ["driver_name"]}},
}
SURROGATES = range(0xD800, 0xE000)  # never in JSON text decoded whole; no pattern can hold one

ERRORS = {
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
# What every batch and suppression endpoint may answer besides its own errors.
ON_BATCHES = {"e401": "missing or wrong bearer token", "e503": "the database cannot be reached"}
BATCH_SUMMARY = {
    "type": "object",
    "properties": {
        "batch_id": {"type": "string"},
        "status": {"type": "string"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


@functools.cache
def printable() -> str:
    """Return the pattern of a printable name: no character str.isprintable refuses, not blank."""
    refused = [
        code
        for code in range(sys.maxunicode + 1)
        if code != 0x20 and code not in SURROGATES and not chr(code).isprintable()
    ]
    # Consecutive code points share code - index: each group is one span of a class.
    spans = [
        [code for _, code in group]
        for _, group in itertools.groupby(enumerate(refused), lambda pair: pair[1] - pair[0])
    ]
    unprintable = "".join(
        chr(span[0]) if len(span) == 1 else f"{chr(span[0])}-{chr(span[-1])}" for span in spans
    )
    # Lookaheads, not a [^…] class: generators expand a class into its ~900,000 characters.
    return rf"(?![\s\S]*[{unprintable}])(?! *$)[\s\S]*"


def _described(converter, field, **kwargs) -> dict:
    """Say what apispec cannot read from a field: the dynamic variables, printable names."""
    if isinstance(field, DynamicVariables):
        return VARIABLES_SCHEMA
    return {"pattern": printable()} if printable_name in field.validators else {}


def _json(schema, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**answer, "headers": headers} if headers else answer


def _errors(*statuses: int, **words: str) -> dict:
    """Return the error answers: ``statuses`` in the usual words, ``e404="…"`` in these."""
    described = {str(status): ERRORS[status] for status in statuses}
    described |= {name.removeprefix("e"): text for name, text in words.items()}
    return {status: _json("Error", text) for status, text in described.items()}


def _in_path(name: str, example: str, pattern: str | None = None) -> list:
    schema = {"type": "string", **({"pattern": pattern} if pattern else {})}
    return [{"name": name, "in": "path", "required": True, "schema": schema, "example": example}]


def _operation(summary, responses, *, security=BEARER, body=None, example=None, **more) -> dict:
    """Return one operation; ``body`` is the schema of its required JSON request body."""
    operation = {"summary": summary, "responses": responses, **more}
    if security:
        operation["security"] = security
    if body is not None:
        media = {"schema": body} if example is None else {"schema": body, "example": example}
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return operation


def _paths() -> dict:
    """Return every JSON endpoint, by path and method."""
    webhook_answers = {
        "200": _json("WebhookAnswer", "recorded and settled (saved, duplicate or acknowledged)"),
        **_errors(400, 401),
        "503": _json(
            "Error",
            "database_error: the database refused it for now; recorded, to replay. "
            "database_unavailable: the database is unreachable; not recorded",
        ),
    }
    recorded = "Every delivery is recorded with its outcome, accepted or not."
    batch = _in_path("batch_id", "cb_0123456789abcdef01234567")
    number = _in_path("phone_number", "+14155550123", E164.pattern)
    not_json = {"e415": ERRORS[415]}
    return {
        "/driver_data/call-elevenlabs": {
            "post": _operation(
                "Write the call, then ask ElevenLabs to dial the driver",
                {
                    "201": _json(
                        CallSchema,
                        "ElevenLabs accepted; conversation_id may still be null",
                        {"Location": {"schema": {"type": "string"}, "description": "the call"}},
                    ),
                    **_errors(400, 401, 409, 413, 415, 422, 502, 503),
                },
                body=CallRequestSchema,
                example=EXAMPLE_CALL_REQUEST,
                parameters=[IDEMPOTENCY_KEY],
            )
        },
        "/driver_data/calls/{call_sid}": {
            "get": _operation(
                "A call with its transcript lines in the order they were said",
                {"200": _json(CallWithTranscriptSchema, "the call"), **_errors(401, 404, 503)},
                parameters=_in_path("call_sid", EXAMPLE_CALL_SID),
            )
        },
        "/webhooks/elevenlabs/transcription": {
            "post": _operation(
                "One transcript line, found by call_sid (or conversation_id)",
                webhook_answers,
                security=SIGNED,
                body="TranscriptionWebhook",
                example=EXAMPLE_LINE,
                description=recorded,
            )
        },
        "/webhooks/elevenlabs/post-call": {
            "post": _operation(
                "ElevenLabs' post-call webhook: a call's transcript and end, or failure",
                webhook_answers,
                security=SIGNED,
                body="PostCallWebhook",
                description=recorded,
            )
        },
        "/healthz": {
            "get": _operation(
                "Whether this process can reach its database",
                {"200": _json("Health", "the database answers"), **_errors(503)},
                security=None,
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This description",
                {"200": _json({"type": "object"}, "OpenAPI 3 document")},
                security=None,
            )
        },
        "/driver_data/call-batches": {
            "post": _operation(
                "Store a batch of calls; the worker places them within cap and windows",
                {
                    "202": _json(BATCH_SUMMARY, "stored; the worker dials"),
                    **_errors(
                        413,
                        415,
                        e400="invalid; nothing written",
                        e401=ON_BATCHES["e401"],
                        e503="not_configured (no agent, phone number id or API key), or the "
                        "database cannot be reached; nothing written",
                    ),
                },
                body=BatchRequestSchema,
                example=EXAMPLE_BATCH,
            )
        },
        "/driver_data/call-batches/{batch_id}": {
            "get": _operation(
                "A batch: status, counts per entry state, entries with their calls",
                {
                    "200": _json(BatchSchema, "the batch"),
                    **_errors(e404="no batch has this id", **ON_BATCHES),
                },
                parameters=batch,
            )
        },
        "/driver_data/call-batches/{batch_id}/cancel": {
            "post": _operation(
                "Cancel what has not been dialled",
                {
                    "200": _json(BATCH_SUMMARY, "cancelled"),
                    **_errors(
                        e404="no batch has this id",
                        e409="the batch is already completed",
                        **ON_BATCHES,
                    ),
                },
                parameters=batch,
            )
        },
        "/driver_data/suppressions": {
            "get": _operation(
                "Every number that is never dialled",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "suppressions": {"type": "array", "items": SuppressionSchema}
                            },
                        },
                        "the list",
                    ),
                    **_errors(**ON_BATCHES),
                },
            )
        },
        "/driver_data/suppressions/{phone_number}": {
            "put": _operation(
                "Never dial this number again",
                {
                    "200": _json(SuppressionSchema, "already suppressed; reason updated"),
                    "201": _json(SuppressionSchema, "suppressed"),
                    **_errors(e400="not an E.164 number, or a bad body", **not_json, **ON_BATCHES),
                },
                parameters=number,
                # May be empty: not required.
                requestBody={"content": {"application/json": {"schema": SuppressionRequestSchema}}},
            ),
            "delete": _operation(
                "Allow this number to be dialled again",
                {
                    "204": {"description": "lifted"},
                    **_errors(
                        e400="not an E.164 number, or a bad body",
                        e404="the number is not suppressed",
                        **ON_BATCHES,
                    ),
                },
                parameters=number,
            ),
        },
    }


def _anchored(node):
    """Return the document with every pattern anchored as JSON Schema reads it.

    marshmallow matches a Regexp from the start and our patterns end in ``\\Z``;
    JSON Schema searches anywhere and knows no ``\\Z``.
    """
    if isinstance(node, list):
        return [_anchored(item) for item in node]
    if not isinstance(node, dict):
        return node
    anchored = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            core = value.removeprefix("^").removesuffix("$").removesuffix("\\Z")
            anchored[key] = f"^(?:{core})$"
        else:
            anchored[key] = _anchored(value)
    return anchored


def build() -> dict:
    """Return the OpenAPI document as a dict."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Call-SID service",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": "Outbound ElevenLabs calls to drivers, and what is said on them."},
    )
    plugin.converter.add_attribute_function(_described)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "one of API_TOKENS"}
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
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("Health", schema=HealthSchema)
    spec.components.schema("WebhookAnswer", schema=WebhookAnswerSchema)
    spec.components.schema("TranscriptionWebhook", component=TRANSCRIPTION_WEBHOOK)
    spec.components.schema("PostCallWebhook", component=POST_CALL_WEBHOOK)
    for path, operations in _paths().items():
        spec.path(path=path, operations=operations)
    document = _anchored(spec.to_dict())
    schemas = document["components"]["schemas"]
    schemas["CallRequest"]["not"] = DRIVER_NAME_TWICE
    # A call is always sent whole, unknown values as null: say so, so that a
    # missing field is caught by whoever checks responses against this.
    for name in ("Call", "CallWithTranscript", "TranscriptLine", "Outcome", "Cost"):
        schemas[name]["required"] = sorted(schemas[name]["properties"])
    return document


@bp.get("/openapi.json")
def openapi_json():
    """Answer with the OpenAPI document, built once per app."""
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build()
    return current_app.extensions["openapi"]
