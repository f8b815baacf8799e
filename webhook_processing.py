"""What a webhook delivery does, shared by the endpoints and by the replay command.

``apply`` is the one code path: it parses the raw body, applies it to calls and
transcriptions, and records the outcome in the same transaction, so a delivery
is either applied and recorded, or rejected with nothing saved but its record.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import transcription_helpers as helpers
import webhook_payloads as payloads
import webhook_post_call
from models import webhook_deliveries as log
from webhook_payloads import Rejected

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: the outcome code, why, and what the body named."""

    outcome: str
    reason: str | None = None
    identifiers: dict = field(default_factory=dict)

    @property
    def status(self) -> int:
        """Return the HTTP status this outcome is answered with."""
        return log.STATUS[self.outcome]


def process(conn, endpoint: str, body: bytes) -> Outcome:
    """Parse ``body`` and apply it; raise Rejected (naming what it could) when it cannot be."""
    document = payloads.parse_json(body)
    identifiers = payloads.identifiers(endpoint, document)
    handler = _transcription_line if endpoint == log.TRANSCRIPTION else webhook_post_call.apply
    try:
        outcome, reason = handler(conn, document)
    except Rejected as rejection:
        rejection.identifiers = identifiers
        raise
    return Outcome(outcome, reason, identifiers)


def apply(conn, endpoint: str, body: bytes, record: Callable[[Outcome], T]) -> tuple[Outcome, T]:
    """Process a delivery and ``record`` its outcome together; a rejection saves only the record."""
    try:
        with conn.transaction():
            outcome = process(conn, endpoint, body)
            return outcome, record(outcome)
    except Rejected as rejection:
        outcome = Outcome(rejection.outcome, rejection.reason, rejection.identifiers)
        return outcome, record(outcome)


def _transcription_line(conn, document) -> tuple[str, str | None]:
    """Save the line of a per-line webhook under its call's conversation."""
    delivery = payloads.line_delivery(document)
    call = helpers.call_for_webhook(
        conn, call_sid=delivery.call_sid, conversation_id=delivery.conversation_id
    )
    if call is None:
        named = [
            f"{key} {value!r}"
            for key, value in (
                ("call_sid", delivery.call_sid),
                ("conversation_id", delivery.conversation_id),
            )
            if value is not None
        ]
        raise Rejected(log.UNKNOWN_CALL, f"no call has {' or '.join(named)}")
    if call.conversation_id is None:
        raise Rejected(
            log.NO_CONVERSATION_ID,
            f"call {call.call_sid} has no conversation_id yet (status {call.status}); "
            "replay this delivery once it has one",
        )
    line = delivery.line
    if helpers.save_line(conn, call.conversation_id, line.speaker, line.message, line.timestamp):
        return log.ACCEPTED, None
    return log.DUPLICATE, "this line was already saved"
