"""``apply``: the one code path a delivery takes, from the endpoints and from replay.

It never commits: the caller records the outcome (a new delivery row, or a
replay's note) in the same transaction, so a delivery is either applied and
recorded, or rejected with nothing saved but its record. A per-line webhook
given its ``received`` columns is the exception: its line and record are one
statement (``Outcome.delivery_id``).
"""

import dataclasses
from decimal import Decimal

import transcription_helpers as helpers
from elevenlabs import payloads
from elevenlabs.payloads import Rejected
from models import webhook_deliveries as deliveries
from models.webhook_deliveries import Outcome
from webhooks import post_call


def apply(
    conn,
    endpoint: str,
    body: bytes,
    *,
    usd_per_credit: Decimal | None = None,
    received: deliveries.Received | None = None,
) -> Outcome:
    """Apply a delivery's body; a rejection changes nothing and says why.

    ``usd_per_credit`` is the operator's price of an ElevenLabs credit, if known;
    ``received``, a per-line delivery's own columns, recorded with its line if new.
    """
    identifiers = {}
    try:
        document = payloads.parse_json(body)
        identifiers = payloads.identifiers(endpoint, document)
        if endpoint == deliveries.TRANSCRIPTION:
            outcome = _transcription_line(conn, payloads.line_delivery(document), received)
        else:
            # A savepoint: a rejection found half-way undoes what the event changed.
            with conn.transaction():
                outcome = post_call.apply(conn, document, usd_per_credit=usd_per_credit)
    except Rejected as rejection:
        outcome = rejection.outcome
    return dataclasses.replace(outcome, identifiers=identifiers)


def _transcription_line(conn, delivery: payloads.LineDelivery, received) -> Outcome:
    saved = helpers.save_webhook_line(
        conn, delivery.call_sid, delivery.conversation_id, delivery.line, received
    )
    if saved.call_sid is None:
        named = {"call_sid": delivery.call_sid, "conversation_id": delivery.conversation_id}
        return Outcome(deliveries.UNKNOWN_CALL, post_call.no_call_has(named))
    if saved.conversation_id is None:
        return Outcome(
            deliveries.NO_CONVERSATION_ID,
            f"call {saved.call_sid} has no conversation_id yet (status {saved.status}); "
            "replay this delivery once it has one",
        )
    if not saved.new:
        return Outcome(deliveries.DUPLICATE, "this line was already saved")
    return Outcome(deliveries.ACCEPTED, delivery_id=saved.delivery_id)
