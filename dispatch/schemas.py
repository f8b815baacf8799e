"""The shapes of batches and suppressions: what a request may hold, how a batch is shown."""

from datetime import UTC, datetime, timedelta
from zoneinfo import available_timezones

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.phone_numbers import E164
from api.schemas import ELEVENLABS_ID, CallRequestSchema, WholeNumber, printable_name, storable
from dispatch.windows import HH_MM, checked, parse_time
from errors import ApiError

MAX_CALLS = 10_000
MAX_REDIALS = 10
# IANA names from tzdata (no file paths, no "local"); a dict: ordered for the document's
# enum, one hash look-up for each entry of a batch. Not "localtime" (on Debian a link to
# the host's /etc/localtime: a window would follow whichever host runs the worker) nor
# "Factory" (no real offset).
NOT_ZONES = {"localtime", "Factory"}
ZONES = dict.fromkeys(sorted(available_timezones() - NOT_ZONES))


# How far ahead a batch may be deferred: a year, leap day included. It also keeps every
# instant the worker derives from it (in UTC, the next window's day) before year 9999 ends.
NOT_BEFORE_AHEAD = timedelta(days=366)


def within_a_year(value: datetime) -> None:
    """Refuse a ``not_before`` more than a year from now (an aware datetime)."""
    if value > datetime.now(UTC) + NOT_BEFORE_AHEAD:
        raise ValidationError("Must be at most a year (366 days) from now.")


class TimeOfDay(fields.String):
    """A local time of day as ``HH:MM``."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_time(super()._deserialize(value, attr, data, **kwargs))
        except ValueError:
            raise ValidationError("Not a time of day as HH:MM, e.g. 08:00.") from None


class BatchCallSchema(CallRequestSchema):
    """One driver of a batch: a call request without agent overrides, plus a time zone."""

    class Meta:
        exclude = ("agent_id", "agent_phone_number_id")

    timezone = fields.String(
        load_default=None,
        validate=validate.OneOf(ZONES, error="Not an IANA time zone name, e.g. America/Chicago."),
    )


class WindowSchema(Schema):
    """Local calling hours, the same for every driver of the batch."""

    start = TimeOfDay(required=True, metadata={"pattern": HH_MM})
    end = TimeOfDay(required=True, metadata={"pattern": HH_MM})

    @validates_schema
    def _opens_before_it_closes(self, data, **kwargs) -> None:
        try:
            checked(data["start"], data["end"])
        except ValueError as exc:
            raise ValidationError(str(exc), field_name="end") from None


class RedialSchema(Schema):
    """How often a busy or unanswered driver is called again, and how long after."""

    busy = WholeNumber(load_default=0, strict=True, validate=validate.Range(0, MAX_REDIALS))
    no_answer = WholeNumber(
        data_key="no-answer", load_default=0, strict=True, validate=validate.Range(0, MAX_REDIALS)
    )
    spacing_minutes = WholeNumber(load_default=30, strict=True, validate=validate.Range(0, 24 * 60))


class BatchRequestSchema(Schema):
    """Body of ``POST /driver_data/call-batches``."""

    name = fields.String(required=True, validate=[validate.Length(1, 200), printable_name])
    calls = fields.List(
        fields.Nested(BatchCallSchema),
        required=True,
        validate=validate.Length(1, MAX_CALLS),
        metadata={"description": "each phone_number at most once"},
    )
    window = fields.Nested(
        WindowSchema,
        load_default=None,
        metadata={"description": "start before end: no overnight windows"},
    )
    not_before = fields.AwareDateTime(
        load_default=None,
        validate=within_a_year,
        metadata={"description": "with a zone; at most a year (366 days) from now"},
    )
    redial = fields.Nested(RedialSchema, load_default=lambda: RedialSchema().load({}))
    agent_id = fields.String(load_default=None, validate=ELEVENLABS_ID)
    agent_phone_number_id = fields.String(load_default=None, validate=ELEVENLABS_ID)

    @validates_schema
    def _each_number_once(self, data, **kwargs) -> None:
        first, twice = {}, {}
        for index, call in enumerate(data.get("calls") or []):
            number = call["phone_number"]
            if number in first:
                twice[index] = {"phone_number": [f"Also given at calls[{first[number]}]."]}
            first.setdefault(number, index)
        if twice:
            raise ValidationError(twice, field_name="calls")


class SuppressionRequestSchema(Schema):
    """Body of ``PUT /driver_data/suppressions/<phone_number>`` (may be empty)."""

    reason = fields.String(load_default=None, validate=[validate.Length(1, 500), storable])


class SuppressionSchema(Schema):
    """A number that is never dialled."""

    phone_number = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


def phone_number_in_path(text: str) -> str:
    """Return the path's phone number, or raise a 400: suppressions are keyed by E.164."""
    if not E164.match(text):
        raise ApiError(
            "Not an E.164 phone number, e.g. +14155550123.",
            code="validation_error",
            details={"phone_number": ["Not an E.164 phone number, e.g. +14155550123."]},
        )
    return text


class AttemptSchema(Schema):
    """One call placed for an entry."""

    call_sid = fields.String()
    status = fields.String()
    failure_reason = fields.String(allow_none=True)
    created_at = fields.String()


class EntrySchema(Schema):
    """One driver of a batch and where the worker is with them."""

    driver_id = fields.Integer()
    phone_number = fields.String()
    driver_name = fields.String(allow_none=True)
    timezone = fields.String()
    state = fields.String()
    next_attempt_at = fields.DateTime()
    backoffs = fields.Integer()
    attempts = fields.List(
        fields.Nested(AttemptSchema),
        metadata={
            "description": "every call written for the entry; ElevenLabs' 429s are among "
            "them but never count against the redials"
        },
    )


class BatchSchema(Schema):
    """A batch as the API shows it."""

    batch_id = fields.String()
    name = fields.String()
    status = fields.String()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    window = fields.Raw(dump_only=True)
    not_before = fields.DateTime(allow_none=True)
    redial = fields.Raw(dump_only=True)
    created_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)
    entries = fields.List(fields.Nested(EntrySchema))
