"""Reading webhook bodies defensively: anything we cannot use is a ``Rejected`` with a reason.

Every string that may reach PostgreSQL is checked for what ``text`` cannot hold
(NUL, lone surrogates), every time for what ``timestamptz`` cannot, so a broken
body is a 400, never a 500. Fields kept only for the record (``informational``)
are cut or dropped with a note instead: refusing them would refuse the rest too.
"""

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models import webhook_deliveries as deliveries
from transcription_helpers import TranscriptLine

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_ID_LENGTH = 200
MAX_SPEAKER_LENGTH = 100
MAX_MESSAGE_LENGTH = 20_000
# The white space str.strip drops (str.isspace), as a regex class: a string of nothing
# else is blank. The OpenAPI document states the rule with it (JSON Schema's \s differs).
SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_UNIX_STRING = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


class Rejected(Exception):
    """A delivery we cannot apply; ``outcome`` says which and why, for the log and the sender."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome = deliveries.Outcome(outcome, reason)


def malformed(reason: str) -> Rejected:
    return Rejected(deliveries.REJECTED_MALFORMED, reason)


@dataclass(frozen=True)
class LineDelivery:
    """The per-line webhook: a line and the call it names (by call_sid, or conversation_id)."""

    call_sid: str | None
    conversation_id: str | None
    line: TranscriptLine


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes):
    """Return the JSON document in ``body``, or raise Rejected."""
    if not body.strip():
        raise malformed("the body is empty")
    try:
        return json.loads(body, parse_constant=_no_constant)  # no NaN or Infinity
    except RecursionError:
        raise malformed("the body is JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise malformed(f"the body is not valid JSON: {_clip(str(exc), 120)}") from None


def obj(value, field: str, *, required: bool = True) -> dict:
    """Return ``value`` if it is a JSON object; an absent optional object reads as ``{}``."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise malformed(_wrong_type(value, field, "an object"))
    return value


def text(value, field: str, *, required: bool = True, max_length: int = MAX_ID_LENGTH):
    """Return ``value`` if it is a string PostgreSQL can store; blank optional strings are None."""
    if not required and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if not isinstance(value, str):
        raise malformed(_wrong_type(value, field, "a string"))
    if not value.strip():
        raise malformed(f"{field} is empty")
    if len(value) > max_length:
        raise malformed(f"{field} is {len(value)} characters; the limit is {max_length}")
    if not storable(value):
        raise malformed(f"{field} contains a NUL character or invalid unicode")
    return value


def informational(
    value, field: str, notes: list, *, max_length: int = MAX_ID_LENGTH, cut: bool = True
) -> str | None:
    """Return an optional string kept for the record; what cannot be kept is noted, not refused.

    Too long, it is cut to ``max_length``, unless ``cut`` is false (an identifier:
    cut, it would name something else) and it is dropped instead.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        notes.append(f"{field} ignored: {_json_type(value)}, not a string")
    elif not storable(value):
        notes.append(f"{field} ignored: it contains a NUL character or invalid unicode")
    elif len(value) > max_length and not cut:
        notes.append(f"{field} ignored: {len(value)} characters; the limit is {max_length}")
    elif len(value) > max_length:
        notes.append(f"{field} cut to {max_length} of its {len(value)} characters")
        return value[:max_length]
    else:
        return value
    return None


def number(value, field: str, *, required: bool = True) -> float | int | None:
    """Return ``value`` if it is a finite JSON number (booleans are not numbers)."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise malformed(_wrong_type(value, field, "a number"))
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 parses as inf
        raise malformed(f"{field} must be a finite number")
    return value


def storable(value: str) -> bool:
    """Return whether PostgreSQL ``text`` can hold this string."""
    try:
        value.encode("utf-8")  # fails on lone surrogates, which JSON's \\ud800 escapes can make
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def timestamp(value, field: str = "timestamp") -> datetime:
    """Return an aware datetime from ISO 8601 with a zone, or unix seconds (number or digits)."""
    if isinstance(value, str) and _UNIX_STRING.fullmatch(value.strip()):
        value = float(value.strip())  # float() strips less than str.strip (not \x1c-\x1f)
    if not isinstance(value, str):
        return at(EPOCH, number(value, field), field)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise malformed(
            f"{field} is neither ISO 8601 nor unix seconds: {_clip(value, 40)!r}"
        ) from None
    if moment.tzinfo is None:
        raise malformed(f"{field} has no time zone; add one (e.g. Z or +00:00)")
    return at(moment, 0, field)


def at(start: datetime, seconds: float, field: str) -> datetime:
    """Return ``start`` plus ``seconds`` in UTC, or raise Rejected outside the years we accept."""
    try:
        moment = (start + timedelta(seconds=seconds)).astimezone(UTC)
    except OverflowError:  # also a zone that pushes year 1 or 9999 over the edge
        moment = None
    if moment is None or not EARLIEST <= moment < LATEST:
        raise malformed(f"{field} is outside {EARLIEST.year} to {LATEST.year}")
    return moment


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def _wrong_type(value, field: str, expected: str) -> str:
    if value is None:
        return f"{field} is missing or null"
    return f"{field} must be {expected}, not {_json_type(value)}"


def _clip(value: str, length: int) -> str:
    return value if len(value) <= length else value[:length] + "…"


def _loggable(value) -> str | None:
    """Return a string fit to log as an identifier, or None when it is not one."""
    if not isinstance(value, str) or not value or not storable(value):
        return None
    return value[:MAX_ID_LENGTH]


def line_delivery(document) -> LineDelivery:
    """Return the line and call named by a per-line webhook body, or raise Rejected."""
    body = obj(document, "the body")
    call_sid = text(body.get("call_sid"), "call_sid", required=False)
    conversation_id = text(body.get("conversation_id"), "conversation_id", required=False)
    if call_sid is None and conversation_id is None:
        raise malformed("call_sid is missing (or conversation_id, during a rollback)")
    line = TranscriptLine(
        speaker=text(body.get("speaker"), "speaker", max_length=MAX_SPEAKER_LENGTH),
        message=text(body.get("message"), "message", max_length=MAX_MESSAGE_LENGTH),
        timestamp=timestamp(body.get("timestamp")),
    )
    return LineDelivery(call_sid, conversation_id, line)


def call_sid_variable(data: dict) -> str | None:
    """Return the call_sid we passed as a dynamic variable, from a post-call envelope's ``data``."""
    client = obj(
        data.get("conversation_initiation_client_data"),
        "data.conversation_initiation_client_data",
        required=False,
    )
    variables = obj(client.get("dynamic_variables"), "dynamic_variables", required=False)
    return text(variables.get("call_sid"), "dynamic_variables.call_sid", required=False)


def identifiers(endpoint: str, document) -> dict:
    """Return what a body names (event type, call_sid, conversation_id), for the delivery log."""
    if not isinstance(document, dict):
        return {}
    if endpoint == deliveries.TRANSCRIPTION:
        return {
            "call_sid": _loggable(document.get("call_sid")),
            "conversation_id": _loggable(document.get("conversation_id")),
        }
    data = document.get("data") if isinstance(document.get("data"), dict) else {}
    try:
        call_sid = call_sid_variable(data)
    except Rejected:  # named unreadably: the log says so through the outcome's reason
        call_sid = None
    return {
        "event_type": _loggable(document.get("type")),
        "call_sid": call_sid,
        "conversation_id": _loggable(data.get("conversation_id")),
    }
