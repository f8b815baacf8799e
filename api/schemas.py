"""The shapes of ``/driver_data``: what a call request may hold, and how a call is shown.

The OpenAPI document is generated from these same classes. Unknown fields are refused
(marshmallow's default, RAISE).
"""

import math

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.phone_numbers import E164
from errors import ApiError
from models.calls import BIGINT_MAX

SAFE_INTEGER = 2**53 - 1  # beyond this a JSON number loses digits in most consumers
MAX_VARIABLES = 32
MAX_VARIABLE_NAME = 64
MAX_VARIABLE_TEXT = 500
# Names ElevenLabs reserves (system__*) or that we set ourselves.
RESERVED_PREFIX = "system__"
RESERVED_NAMES = ("call_sid",)
VARIABLE_NAME = validate.Regexp(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ELEVENLABS_ID = validate.Regexp(
    r"[A-Za-z0-9_-]{1,100}\Z", error="Not an ElevenLabs id (letters, digits, _ and -)."
)
NO_NUL = r"[^\x00]*"  # PostgreSQL text holds no NUL


def storable(text: str) -> None:
    """Refuse text PostgreSQL cannot store: NUL, or lone surrogates (not UTF-8)."""
    if "\x00" in text:
        raise ValidationError("Must not contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text.") from None


def printable_name(text: str) -> None:
    """Refuse a name with control characters or nothing but spaces."""
    storable(text)
    if not text.isprintable() or not text.strip():
        raise ValidationError("Must be printable text, not blank.")


class WholeNumber(fields.Integer):
    """An integer, also written with a zero fraction (``42.0``): JSON Schema's integer."""

    def _validated(self, value) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


# What the OpenAPI document says of DynamicVariables: apispec cannot read its checks.
VARIABLES_SCHEMA = {
    "type": "object",
    "maxProperties": MAX_VARIABLES,
    "propertyNames": {
        "maxLength": MAX_VARIABLE_NAME,
        "pattern": VARIABLE_NAME.regex.pattern,
        "not": {
            "description": "reserved: ElevenLabs' system__ names, and ours",
            "anyOf": [
                {"pattern": rf"{RESERVED_PREFIX}[\s\S]*"},
                {"enum": list(RESERVED_NAMES)},
            ],
        },
    },
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": MAX_VARIABLE_TEXT, "pattern": NO_NUL},
            {"type": "boolean"},
            {"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER},
            {"type": "number", "not": {"type": "integer"}},  # a fraction loses no digits
        ]
    },
}


class DynamicVariables(fields.Field):
    """A flat object of strings, numbers and booleans, passed on to the ElevenLabs agent."""

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("Must be an object of names to strings, numbers or booleans.")
        if len(value) > MAX_VARIABLES:
            raise ValidationError(f"At most {MAX_VARIABLES} variables.")
        problems = {}
        for name, item in value.items():
            problem = _name_problem(name) or _value_problem(item)
            if problem:
                problems[name[: MAX_VARIABLE_NAME + 1]] = [problem]
        if problems:
            raise ValidationError(problems)
        return dict(value)


def _name_problem(name: str) -> str | None:
    if name.startswith(RESERVED_PREFIX) or name in RESERVED_NAMES:
        return f"The name {name[:MAX_VARIABLE_NAME]!r} is reserved."
    if len(name) > MAX_VARIABLE_NAME:
        return f"Names are at most {MAX_VARIABLE_NAME} characters."
    if not VARIABLE_NAME.regex.match(name):
        return "Names are letters, digits and _, not starting with a digit."
    return None


def _value_problem(value) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= SAFE_INTEGER else f"Integers are at most ±{SAFE_INTEGER}."
    if isinstance(value, float):
        return None if math.isfinite(value) else "Numbers must be finite."
    if not isinstance(value, str):
        return "Must be a string, number or boolean."
    if len(value) > MAX_VARIABLE_TEXT:
        return f"Text values are at most {MAX_VARIABLE_TEXT} characters."
    try:
        storable(value)
    except ValidationError as exc:
        return exc.messages[0]
    return None


class CallRequestSchema(Schema):
    """Body of ``POST /driver_data/call-elevenlabs``."""

    driver_id = WholeNumber(required=True, strict=True, validate=validate.Range(1, BIGINT_MAX))
    phone_number = fields.String(
        required=True,
        validate=validate.Regexp(E164, error="Not an E.164 phone number, e.g. +14155550123."),
    )
    driver_name = fields.String(
        load_default=None, validate=[validate.Length(1, 100), printable_name]
    )
    variables = DynamicVariables(load_default=dict)
    agent_id = fields.String(load_default=None, validate=ELEVENLABS_ID)
    agent_phone_number_id = fields.String(load_default=None, validate=ELEVENLABS_ID)

    @validates_schema
    def _driver_name_once(self, data, **kwargs) -> None:
        """Refuse two driver names: ``driver_name`` is also sent as a dynamic variable."""
        if data.get("driver_name") is not None and "driver_name" in data.get("variables", {}):
            raise ValidationError(
                {"driver_name": ["Given twice: use the top-level driver_name only."]},
                field_name="variables",
            )


class CallSchema(Schema):
    """A call as the API shows it."""

    call_sid = fields.String()
    status = fields.String()
    driver_id = fields.Integer(allow_none=True)
    driver_name = fields.String(allow_none=True)
    phone_number = fields.String(allow_none=True)
    conversation_id = fields.String(allow_none=True)
    twilio_call_sid = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    call_duration_secs = fields.Integer(allow_none=True)
    termination_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    api_called_at = fields.DateTime(allow_none=True)
    initiated_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


class TranscriptLineSchema(Schema):
    """One line said on a call."""

    speaker = fields.String()
    message = fields.String()
    timestamp = fields.DateTime()


class CostSchema(Schema):
    """What a call cost: ElevenLabs' credits, and dollars only when a price per credit is set."""

    credits = fields.Integer(allow_none=True)
    usd = fields.Float(allow_none=True, metadata={"description": "null unless priced; never 0"})


class OutcomeSchema(Schema):
    """What ElevenLabs made of the call; every member null until known (a cost never 0)."""

    call_successful = fields.String(
        allow_none=True, metadata={"enum": ["success", "failure", "unknown", None]}
    )
    summary = fields.String(allow_none=True)
    data_collection = fields.Dict(
        keys=fields.String(),
        allow_none=True,
        metadata={"description": "the driver's answers, {name: value}"},
    )
    termination_reason = fields.String(allow_none=True)
    duration_secs = fields.Integer(allow_none=True)
    cost = fields.Nested(CostSchema)


class CallWithTranscriptSchema(CallSchema):
    """A call with its transcript lines in the order they were said, and its outcome."""

    transcript = fields.List(fields.Nested(TranscriptLineSchema))
    outcome = fields.Nested(OutcomeSchema)


def load(schema: Schema, body, what: str) -> dict:
    """Return the validated body, or raise a 400 naming each bad field; nothing is written."""
    if not isinstance(body, dict):
        raise ApiError(
            "The request body must be a JSON object.",
            code="validation_error",
            details={"_schema": ["The body must be a JSON object."]},
        )
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise ApiError(
            f"The {what} is not valid; see details for each field.",
            code="validation_error",
            details=exc.messages,
        ) from None
