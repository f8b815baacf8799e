"""The OpenAPI description of the batch and suppression endpoints (``api/openapi.py`` adds it)."""

from api.phone_numbers import E164
from dispatch.schemas import (
    BatchRequestSchema,
    BatchSchema,
    SuppressionRequestSchema,
    SuppressionSchema,
)

BEARER = [{"bearerAuth": []}]
EXAMPLE_BATCH = {
    "name": "Tuesday check-in",
    "calls": [
        {"driver_id": 42, "phone_number": "+14155550123", "timezone": "America/Chicago"},
        {"driver_id": 43, "phone_number": "+13125550199", "driver_name": "Sam"},
    ],
    "window": {"start": "08:00", "end": "20:00"},
    "redial": {"busy": 1, "no-answer": 1, "spacing_minutes": 30},
}


def _answer(schema, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(**described) -> dict:
    return {status[1:]: _answer("Error", words) for status, words in described.items()}


def _parameter(name: str, example: str, pattern: str | None = None) -> list:
    schema = {"type": "string", **({"pattern": pattern} if pattern else {})}
    return [{"name": name, "in": "path", "required": True, "schema": schema, "example": example}]


COMMON = {"_401": "missing or wrong bearer token", "_503": "the database cannot be reached"}
NOT_JSON = {"_415": "the body was not sent with Content-Type: application/json"}
NO_BATCH = {"_404": "no batch has this id"}
BAD_NUMBER = {"_400": "not an E.164 number, or a bad body"}
SUMMARY = {
    "type": "object",
    "properties": {
        "batch_id": {"type": "string"},
        "status": {"type": "string"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def paths() -> dict:
    """Return the batch and suppression endpoints, by path and method."""
    batch = _parameter("batch_id", "cb_0123456789abcdef01234567")
    number = _parameter("phone_number", "+14155550123", E164.pattern)
    return {
        "/driver_data/call-batches": {
            "post": {
                "summary": "Store a batch of calls; the worker places them within cap and windows",
                "security": BEARER,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": BatchRequestSchema, "example": EXAMPLE_BATCH}
                    },
                },
                "responses": {
                    "202": _answer(SUMMARY, "stored; the worker dials"),
                    **_errors(
                        _400="invalid; nothing written",
                        _413="the body is too large",
                        **NOT_JSON,
                        _401=COMMON["_401"],
                        _503="not_configured (no agent, phone number id or API key), or the "
                        "database cannot be reached; nothing written",
                    ),
                },
            }
        },
        "/driver_data/call-batches/{batch_id}": {
            "get": {
                "summary": "A batch: status, counts per entry state, entries with their calls",
                "security": BEARER,
                "parameters": batch,
                "responses": {
                    "200": _answer(BatchSchema, "the batch"),
                    **_errors(**NO_BATCH, **COMMON),
                },
            }
        },
        "/driver_data/call-batches/{batch_id}/cancel": {
            "post": {
                "summary": "Cancel what has not been dialled",
                "security": BEARER,
                "parameters": batch,
                "responses": {
                    "200": _answer(SUMMARY, "cancelled"),
                    **_errors(**NO_BATCH, _409="the batch is already completed", **COMMON),
                },
            }
        },
        "/driver_data/suppressions": {
            "get": {
                "summary": "Every number that is never dialled",
                "security": BEARER,
                "responses": {
                    "200": _answer(
                        {
                            "type": "object",
                            "properties": {
                                "suppressions": {"type": "array", "items": SuppressionSchema}
                            },
                        },
                        "the list",
                    ),
                    **_errors(**COMMON),
                },
            }
        },
        "/driver_data/suppressions/{phone_number}": {
            "put": {
                "summary": "Never dial this number again",
                "security": BEARER,
                "parameters": number,
                "requestBody": {
                    "content": {"application/json": {"schema": SuppressionRequestSchema}}
                },
                "responses": {
                    "200": _answer(SuppressionSchema, "already suppressed; reason updated"),
                    "201": _answer(SuppressionSchema, "suppressed"),
                    **_errors(**BAD_NUMBER, **NOT_JSON, **COMMON),
                },
            },
            "delete": {
                "summary": "Allow this number to be dialled again",
                "security": BEARER,
                "parameters": number,
                "responses": {
                    "204": {"description": "lifted"},
                    **_errors(**BAD_NUMBER, _404="the number is not suppressed", **COMMON),
                },
            },
        },
    }
