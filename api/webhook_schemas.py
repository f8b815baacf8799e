"""The shapes the OpenAPI document describes that no view validates with marshmallow.

The error shape and the small answers, and the webhook bodies (read by hand,
defensively, in ``elevenlabs.payloads``), written after DESIGN.md and ElevenLabs'
documentation. ``/driver_data`` is described from ``api.schemas`` itself.
"""

from marshmallow import INCLUDE, Schema, fields, validate

from elevenlabs.payloads import (
    EARLIEST,
    LATEST,
    MAX_ID_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_SPEAKER_LENGTH,
)


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

    status = fields.String(
        required=True,
        validate=validate.OneOf(["accepted", "duplicate", "acknowledged", "stale"]),
    )
    delivery_id = fields.Integer(required=True, metadata={"description": "in the delivery log"})


TIMESTAMP = {
    "description": "ISO 8601 with a zone, or unix seconds (a number or a string of digits); "
    "from 2000 to 2100",
    "anyOf": [
        {"type": "string", "format": "date-time", "pattern": r"^20[0-9]{2}-"},
        # 2001-09-09 to 2033-05-18 as a string of digits: a range a pattern can say.
        {"type": "string", "pattern": r"^[1][0-9]{9}(\.[0-9]{1,9})?$"},
        {
            "type": "number",
            "minimum": EARLIEST.timestamp(),
            "maximum": LATEST.timestamp(),
            "exclusiveMaximum": True,
        },
    ],
}


class TranscriptionWebhookSchema(Schema):
    """One line of a call, as ElevenLabs' per-line webhook template sends it."""

    class Meta:
        unknown = INCLUDE

    call_sid = fields.String(
        validate=validate.Length(1, MAX_ID_LENGTH),
        metadata={"description": "ours, from the dynamic variables; or give conversation_id"},
    )
    conversation_id = fields.String(
        validate=validate.Length(1, MAX_ID_LENGTH),
        metadata={"description": "accepted instead of call_sid while rolled back"},
    )
    speaker = fields.String(required=True, validate=validate.Length(1, MAX_SPEAKER_LENGTH))
    message = fields.String(required=True, validate=validate.Length(1, MAX_MESSAGE_LENGTH))
    timestamp = fields.Raw(required=True, metadata=TIMESTAMP)


class PostCallTurnSchema(Schema):
    """One turn of a post-call transcript."""

    class Meta:
        unknown = INCLUDE

    role = fields.String(allow_none=True, metadata={"description": "agent or user"})
    message = fields.String(allow_none=True)
    time_in_call_secs = fields.Float(allow_none=True)


class PostCallDataSchema(Schema):
    """``data`` of a post-call webhook; every field may be missing or null."""

    class Meta:
        unknown = INCLUDE

    agent_id = fields.String(allow_none=True)
    conversation_id = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    transcript = fields.List(fields.Nested(PostCallTurnSchema), allow_none=True)
    metadata = fields.Dict(
        allow_none=True,
        metadata={
            "description": "start_time_unix_secs, call_duration_secs, termination_reason, "
            "phone_call.call_sid (Twilio's)"
        },
    )
    conversation_initiation_client_data = fields.Dict(
        allow_none=True, metadata={"description": "dynamic_variables.call_sid names our call"}
    )
    failure_reason = fields.String(
        allow_none=True, metadata={"description": "call_initiation_failure: busy, no-answer…"}
    )


class PostCallWebhookSchema(Schema):
    """ElevenLabs' post-call envelope."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "post_call_transcription, call_initiation_failure, post_call_audio; "
            "other types are acknowledged and recorded"
        },
    )
    event_timestamp = fields.Integer(allow_none=True)
    data = fields.Nested(PostCallDataSchema, required=True)
