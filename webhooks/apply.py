"""What a webhook delivery does, shared by the endpoints and by the replay command.

``apply`` is the one code path: it parses the raw body, applies it to calls and
transcriptions, and records the outcome atomically with what it changed, so a
delivery is either applied and recorded, or rejected with nothing saved but its
record. A per-line webhook is one statement (look-up, line, record: no
BEGIN/COMMIT round trips); a post-call webhook, several in one transaction.
"""

import functools
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from psycopg import sql

import transcription_helpers as helpers
from elevenlabs import payloads as payloads
from elevenlabs.payloads import LineDelivery, Rejected
from models import webhook_deliveries as deliveries
from webhooks import post_call

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

DUPLICATE_REASON = "this line was already saved"
# format() arguments: the call's call_sid and status.
NO_CONVERSATION_REASON = (
    "call %s has no conversation_id yet (status %s); replay this delivery once it has one"
)


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: the outcome code, why, and what the body named."""

    outcome: str
    reason: str | None = None
    identifiers: dict = field(default_factory=dict)

    @property
    def status(self) -> int:
        """Return the HTTP status this outcome is answered with."""
        return deliveries.STATUS[self.outcome]


class Recorder(Protocol[T_co]):
    """Where a delivery's outcome goes: a new log row (the endpoints) or a replay note."""

    def __call__(self, outcome: Outcome) -> T_co:
        """Record an outcome already decided, in a statement of its own."""

    def statement(self, identifiers: dict) -> tuple[str, dict]:
        """Return the record as SQL reading outcome, reason, http_status from CTE ``verdict``."""


def apply(conn, endpoint: str, body: bytes, record: Recorder[T]) -> tuple[Outcome, T]:
    """Process a delivery and ``record`` its outcome together; a rejection saves only the record."""
    try:
        document, identifiers = _parse(endpoint, body)
        if endpoint == deliveries.TRANSCRIPTION:
            delivery = _named(identifiers, payloads.line_delivery, document)
            return _transcription_line(conn, delivery, identifiers, record)
        with conn.transaction():
            outcome = _post_call(conn, document, identifiers)
            return outcome, record(outcome)
    except Rejected as rejection:
        outcome = Outcome(rejection.outcome, rejection.reason, rejection.identifiers)
        return outcome, record(outcome)


def _parse(endpoint: str, body: bytes):
    document = payloads.parse_json(body)
    return document, payloads.identifiers(endpoint, document)


def _named(identifiers: dict, parse, document):
    """Return ``parse(document)``; a rejection names the identifiers the body carried."""
    try:
        return parse(document)
    except Rejected as rejection:
        rejection.identifiers = identifiers
        raise


def _post_call(conn, document, identifiers: dict) -> Outcome:
    outcome, reason = _named(identifiers, lambda doc: post_call.apply(conn, doc), document)
    return Outcome(outcome, reason, identifiers)


# One statement: ``found`` and ``line`` (transcription_helpers), the verdict they
# make, and the delivery's record reading it. In autocommit it is its own
# transaction: the line and its record are saved together or not at all.
LINE_STATEMENT = """
    WITH {line_ctes},
    state AS (
        SELECT CASE
                 WHEN found.call_sid IS NULL THEN %(unknown_call)s
                 WHEN found.conversation_id IS NULL THEN %(no_conversation_id)s
                 WHEN EXISTS (SELECT FROM line) THEN %(accepted)s
                 ELSE %(duplicate)s
               END AS outcome,
               found.call_sid, found.status
          FROM (SELECT) AS one LEFT JOIN found ON true
    ),
    verdict AS (
        SELECT outcome,
               CASE outcome
                 WHEN %(unknown_call)s THEN %(unknown_call_reason)s
                 WHEN %(no_conversation_id)s
                   THEN format(%(no_conversation_reason)s, call_sid, status)
                 WHEN %(duplicate)s THEN %(duplicate_reason)s
               END AS reason,
               CASE outcome
                 WHEN %(unknown_call)s THEN %(unknown_call_status)s
                 WHEN %(no_conversation_id)s THEN %(no_conversation_id_status)s
                 WHEN %(duplicate)s THEN %(duplicate_status)s
                 ELSE %(accepted_status)s
               END::int AS http_status
          FROM state
    ),
    recorded AS ({record})
    SELECT verdict.outcome, verdict.reason, (SELECT id FROM recorded) FROM verdict
"""


def line_statement(delivery: LineDelivery, identifiers: dict, record: Recorder) -> tuple[str, dict]:
    """Return the one statement that applies a per-line webhook and records it, with its values."""
    record_sql, record_params = record.statement(identifiers)
    named = [
        f"{key} {value!r}"
        for key, value in (
            ("call_sid", delivery.call_sid),
            ("conversation_id", delivery.conversation_id),
        )
        if value is not None
    ]
    params = {
        "call_sid": delivery.call_sid,
        "conversation_id": delivery.conversation_id,
        "speaker": delivery.line.speaker,
        "message": delivery.line.message,
        "at": delivery.line.timestamp,
        "unknown_call_reason": f"no call has {' or '.join(named)}",
        **record_params,
    }
    return _line_sql(record_sql), params


def _constants() -> dict:
    """Return the statement's fixed values: outcomes, their statuses, the fixed reasons."""
    values = {
        "no_conversation_reason": NO_CONVERSATION_REASON,
        "duplicate_reason": DUPLICATE_REASON,
    }
    for outcome in (
        deliveries.ACCEPTED,
        deliveries.DUPLICATE,
        deliveries.UNKNOWN_CALL,
        deliveries.NO_CONVERSATION_ID,
    ):
        values[outcome] = outcome
        values[f"{outcome}_status"] = deliveries.STATUS[outcome]
    return values


@functools.cache
def _line_sql(record_sql: str) -> str:
    """Return the statement with its fixed values written in as literals.

    Fewer bound values: psycopg maps and dumps each one on every execution.
    """
    text = LINE_STATEMENT.format(line_ctes=helpers.WEBHOOK_LINE_CTES, record=record_sql)
    for name, value in _constants().items():
        literal = sql.Literal(value).as_string().replace("%", "%%")
        text = text.replace(f"%({name})s", literal)
    return text


def _transcription_line(conn, delivery: LineDelivery, identifiers: dict, record: Recorder):
    """Save the line of a per-line webhook under its call's conversation, and record it."""
    outcome, reason, recorded = conn.execute(
        *line_statement(delivery, identifiers, record)
    ).fetchone()
    return Outcome(outcome, reason, identifiers), recorded
