"""What the OpenAPI document describes that no view validates with marshmallow.

The error shape, the small answers, and the webhook bodies: JSON Schema of what
``elevenlabs.payloads`` and ``webhooks.post_call`` accept, built from their limits.
"""

from marshmallow import Schema, fields, validate

from api.schemas import NO_NUL
from elevenlabs.payloads import (
    EARLIEST,
    LATEST,
    MAX_ID_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_SPEAKER_LENGTH,
    SPACE,
)
from models import webhook_deliveries as deliveries
from webhooks.post_call import POST_CALL_TRANSCRIPTION, TWILIO_CALL_SID


class ErrorSchema(Schema):
    """Every error the API answers with."""

    error = fields.String(required=True, metadata={"description": "short code"})
    message = fields.String(required=True, metadata={"description": "a human sentence"})
    details = fields.Dict(required=True, metadata={"description": "per-field or per-case facts"})


class HealthSchema(Schema):
    """``GET /healthz`` when the database answers."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class WebhookAnswerSchema(Schema):
    """What a webhook delivery that was recorded and settled gets back."""

    status = fields.String(required=True, validate=validate.OneOf(deliveries.SETTLED))
    delivery_id = fields.Integer(required=True, metadata={"description": "in the delivery log"})


# Strings as ``payloads.text`` reads them: PostgreSQL text holds no NUL, and a blank
# one (nothing but white space) is as good as none.
def text(most: int) -> dict:
    """Return a required string: not blank, no NUL, at most ``most`` characters."""
    return {"type": "string", "maxLength": most, "pattern": rf"[^\x00]*[^\x00{SPACE}][^\x00]*"}


def optional_text(description: str) -> dict:
    """Return an identifier that may be null or blank (read as absent)."""
    return {
        "type": ["string", "null"],
        "maxLength": MAX_ID_LENGTH,
        "pattern": NO_NUL,
        "description": f"{description}; null or blank: absent",
    }


def filled(*path: str) -> dict:
    """Return the schema of an object whose string at ``path`` is filled in."""
    schema = text(MAX_ID_LENGTH)
    for name in reversed(path):
        schema = {"type": "object", "required": [name], "properties": {name: schema}}
    return schema


# What the server reads as an instant: from EARLIEST (inclusive) to LATEST (exclusive),
# 2000 to 2100; the patterns spell those years out (test_openapi holds them to the range).
# An ISO 8601 string as RFC 3339 writes it (T and Z upper case, seconds to 59), on a day
# whose every zone offset lands inside; on the first day and the last, only the offsets that
# keep every time of day inside (Z or 00:00, and west of UTC on the first, east on the last).
_TIME = r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
_OFFSET = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_MONTH = r"(0[1-9]|1[0-2])"
_ANY_ZONE_DAY = (
    rf"(20(0[1-9]|[1-8][0-9]|9[0-8])-{_MONTH}-{_DAY}"
    rf"|2000-(0[2-9]|1[0-2])-{_DAY}|2000-01-(0[2-9]|[12][0-9]|3[01])"
    rf"|2099-(0[1-9]|1[01])-{_DAY}|2099-12-([0-2][0-9]|30))"
)
ISO_INSTANT = (
    rf"{_ANY_ZONE_DAY}{_TIME}(Z|[+-]{_OFFSET})"
    rf"|2000-01-01{_TIME}(Z|[+-]00:00|-{_OFFSET})"
    rf"|2099-12-31{_TIME}(Z|[+-]00:00|\+{_OFFSET})"
)
# Unix seconds as digits (white space around is ignored): 950000000 to 4099999999, the
# part of 946684800 to 4102444799 a short pattern can say (2000-02-08 to 2099-11-30).
_DIGITS = r"(0{0,3}9[5-9][0-9]{7}|0{0,2}([1-3][0-9]{9}|40[0-9]{8}))(\.[0-9]{1,9})?"
UNIX_DIGITS = rf"[{SPACE}]*{_DIGITS}[{SPACE}]*"
TIMESTAMP = {
    "description": f"an instant from {EARLIEST.year} to {LATEST.year}: ISO 8601 with a zone, "
    "or unix seconds (a number, or a string of digits)",
    "anyOf": [
        {"type": "string", "format": "date-time", "pattern": ISO_INSTANT},
        {"type": "string", "pattern": UNIX_DIGITS},
        # Unix seconds are kept to the microsecond, rounded half to even: these are the
        # first and last numbers that round to an instant inside the range.
        {
            "type": "number",
            "minimum": EARLIEST.timestamp() - 0.5e-6,
            "maximum": LATEST.timestamp() - 1e-6,
        },
    ],
}

TRANSCRIPTION_WEBHOOK = {
    "type": "object",
    "description": "One line of a call, as ElevenLabs' per-line webhook template sends it",
    "required": ["speaker", "message", "timestamp"],
    "properties": {
        "call_sid": optional_text("ours, from the dynamic variables"),
        "conversation_id": optional_text("names the call instead of call_sid"),
        "speaker": text(MAX_SPEAKER_LENGTH),
        "message": text(MAX_MESSAGE_LENGTH),
        "timestamp": TIMESTAMP,
    },
    "anyOf": [filled("call_sid"), filled("conversation_id")],
}

# A turn with no message (a tool call, silence) is not a line; one with a message is,
# unless it cannot be one: then it is skipped with a note, never refused, so no shape
# is asked of it here.
_TURN = {
    "description": "a line when it is an object with a message (a string of at most "
    f"{MAX_MESSAGE_LENGTH} characters, no NUL), a role and a time in call (the call's start "
    f"plus it from {EARLIEST.year} to {LATEST.year}); a turn without a message is not a "
    "line, and any other is skipped and noted",
}
_RECORD_ONLY = "kept for the record: a value that cannot be kept is noted, never refused"


def _event_data(event_type: str) -> dict:
    """Return ``data`` of a post-call event: it must name its call one way or another."""
    data = {
        "type": "object",
        "properties": {
            "conversation_id": optional_text("ElevenLabs' conversation"),
            "conversation_initiation_client_data": {
                "type": ["object", "null"],
                "properties": {
                    "dynamic_variables": {
                        "type": ["object", "null"],
                        "properties": {"call_sid": optional_text("ours: names the call")},
                    }
                },
            },
            "metadata": {"type": ["object", "null"], "description": _RECORD_ONLY},
            "failure_reason": {"description": _RECORD_ONLY},
        },
        "anyOf": [
            filled("conversation_initiation_client_data", "dynamic_variables", "call_sid"),
            filled("conversation_id"),
            # Twilio's SID, last: a value that cannot name a call is ignored, not refused.
            {
                **filled("metadata", *TWILIO_CALL_SID[event_type]),
                "description": "Twilio's call SID",
            },
        ],
    }
    if event_type == POST_CALL_TRANSCRIPTION:
        data["properties"]["transcript"] = {"type": ["array", "null"], "items": _TURN}
    return data


POST_CALL_WEBHOOK = {
    "type": "object",
    "description": "ElevenLabs' post-call envelope",
    "required": ["type"],
    "properties": {
        "type": text(MAX_ID_LENGTH),
        "event_timestamp": {"description": "unix seconds; not read"},
    },
    "anyOf": [
        *(
            {
                "required": ["data"],
                "properties": {"type": {"const": kind}, "data": _event_data(kind)},
            }
            for kind in TWILIO_CALL_SID
        ),
        {
            "description": "any other type (post_call_audio…): acknowledged and recorded, "
            "whatever it holds",
            "properties": {"type": {"not": {"enum": list(TWILIO_CALL_SID)}}},
        },
    ],
}
