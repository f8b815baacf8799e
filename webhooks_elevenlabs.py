"""Blueprint ``/webhooks/elevenlabs``: what ElevenLabs sends back about our calls.

Every request is recorded in ``webhook_deliveries`` before it is answered: ElevenLabs
never retries a 4xx, so the log is the only trace of what was refused, to replay.
"""

import logging
import sys
import time
from dataclasses import dataclass

import psycopg
from flask import Blueprint, current_app, g, request
from psycopg_pool import PoolTimeout

from db import fresh_conn, get_conn, unreachable
from elevenlabs import payloads
from elevenlabs.signature import HEADER, SignatureError, fresh, signed
from errors import ApiError, first_line
from models import webhook_deliveries as deliveries
from models.webhook_deliveries import Outcome
from observability import logs, metrics
from webhooks import apply
from webhooks.budget import Budget

bp = Blueprint("webhooks_elevenlabs", __name__, url_prefix="/webhooks/elevenlabs")
logger = logging.getLogger(__name__)

# Bytes read per endpoint. A line is well under 1 kB; a post-call envelope is
# hundreds of kB for a long call, and post_call_audio carries base64 audio (MBs),
# which must not fail: ElevenLabs disables a webhook after 10 failures in a row.
READ_LIMITS = {deliveries.TRANSCRIPTION: 64 * 1024, deliveries.POST_CALL: 32 * 1024 * 1024}
# What the log keeps of a body: all of it when authentic (read whole within the
# endpoint's limit, so any refused line or transcript can be replayed); otherwise
# a prefix to inspect, never to replay: a body not known to be ElevenLabs' (anyone
# can send those, at any rate), an oversized one, or an event we acknowledge
# without storing (audio: MBs a call).
INSPECTION_PREFIX = 4 * 1024
# Deliveries not known to be ElevenLabs' recorded per minute and worker, beyond
# which they are answered but not recorded (webhook_deliveries_unrecorded_total):
# at most 4 KiB each, so ~0.5 MiB a minute per worker whatever a sender does.
UNSIGNED_PER_MINUTE = 120

MESSAGES = {
    deliveries.REJECTED_SIGNATURE: (
        "The ElevenLabs-Signature header is missing or does not sign the body."
    ),
    deliveries.REJECTED_MALFORMED: "The webhook body cannot be used.",
    deliveries.UNKNOWN_CALL: "No call matches this webhook.",
    # What helps differs (a line: replay once the call has one; a post-call that
    # names none: reconciliation), so each reason says it, not this.
    deliveries.NO_CONVERSATION_ID: "The call has no conversation_id to file the lines under.",
    deliveries.CONFLICT: "The webhook contradicts what is recorded for its call.",
}


@dataclass
class Incoming:
    """A request as it arrived, and the ``rejection`` when screening refused it."""

    endpoint: str
    body: bytes
    size: int
    oversized: bool
    signature_header: str | None
    signature_valid: bool | None = None
    rejection: Outcome | None = None

    def logged(self, outcome: Outcome) -> deliveries.Received:
        """Return the log's columns that come from the request itself."""
        trusted = self.signature_valid is not False and not self.oversized
        whole = trusted and outcome.outcome != deliveries.ACKNOWLEDGED
        body = self.body if whole else self.body[:INSPECTION_PREFIX]
        header = self.signature_header  # for a text column: no NUL, at most 500 characters
        return deliveries.Received(
            endpoint=self.endpoint,
            signature_valid=self.signature_valid,
            signature_header=header.replace("\x00", "")[:500] if header else None,
            body=body,
            body_size=self.size,
            body_truncated=self.oversized or len(body) < len(self.body),
        )


def receive(endpoint: str):
    """Read, screen, apply and record one delivery; answer with its outcome."""
    incoming = read_request(endpoint)
    conn = None
    try:
        conn = get_conn()
        outcome, delivery_id = _handle(conn, incoming)
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        # 503, not 500: the database failed, not the delivery; ElevenLabs retries
        # 5xx when retries are enabled, and a recorded one can be replayed.
        raise _database_failed(conn, incoming, exc) from None
    except Exception:  # a bug of ours: recorded, so it can be replayed after the fix
        delivery_id = _record_failure(conn, incoming, "an unexpected error; see the logs")
        # Raised on, so Flask logs it and reports it to Sentry; its 500 names the delivery.
        g.error_details = {"delivery_id": delivery_id}
        raise
    metrics.record_webhook_delivery(endpoint, outcome.outcome)
    metrics.record_ending(outcome)
    logs.bind(**{k: outcome.identifiers.get(k) for k in ("call_sid", "conversation_id")})
    if outcome.status == 200:
        return {"status": outcome.outcome, "delivery_id": delivery_id}
    if outcome.status >= 400:
        logger.warning("webhook delivery %s %s: %s", delivery_id, outcome.outcome, outcome.reason)
    raise ApiError(
        MESSAGES[outcome.outcome],
        status=outcome.status,
        code=outcome.outcome,
        details={"reason": outcome.reason, "delivery_id": delivery_id},
    )


@bp.post("/transcription")
def transcription():
    """Save one line of a call's transcript (ElevenLabs' per-line webhook)."""
    return receive(deliveries.TRANSCRIPTION)


@bp.post("/post-call")
def post_call():
    """Apply a post-call webhook: the transcript and end of a call, or its failure."""
    return receive(deliveries.POST_CALL)


def read_request(endpoint: str) -> Incoming:
    """Screen the signature header, then read what the body needs: all of it, or a prefix."""
    # Our own limit instead of MAX_CONTENT_LENGTH, whose 413 would come before we
    # could record the delivery (None here would mean "use the app's setting").
    # Framed by Content-Length or chunked, the stream ends where the body does.
    request.max_content_length = sys.maxsize
    config = current_app.config
    header, secret = request.headers.get(HEADER), config["ELEVENLABS_WEBHOOK_SECRET"]
    limit = config.get("WEBHOOK_READ_LIMITS", READ_LIMITS)[endpoint]
    past, future = config["WEBHOOK_TOLERANCE_PAST"], config["WEBHOOK_TOLERANCE_FUTURE"]
    try:
        timed = fresh(header, now=time.time(), past=past, future=future) if secret else None
    except SignatureError as exc:
        # No body can make this header valid: keep a prefix to inspect, read no more.
        rejection = Outcome(deliveries.REJECTED_SIGNATURE, str(exc))
        body, size = _read(INSPECTION_PREFIX + 1)
        return Incoming(endpoint, body, size, False, header, False, rejection)
    body, size = _read(limit + 1)
    incoming = Incoming(endpoint, body, size, len(body) > limit, header)
    if incoming.oversized:
        reason = f"the body is over {limit} bytes"
        incoming.rejection = Outcome(deliveries.REJECTED_MALFORMED, reason)
    elif secret:
        try:
            signed(secret, timed, body)
            incoming.signature_valid = True
        except SignatureError as exc:
            incoming.signature_valid = False
            incoming.rejection = Outcome(deliveries.REJECTED_SIGNATURE, str(exc))
    return incoming


def _read(most: int) -> tuple[bytes, int]:
    """Return at most ``most`` bytes of the request body, and its size as sent."""
    # Ask for what the body says it holds (the stream ends there), not for the
    # endpoint's limit, which would allocate that much for every short line.
    sent = request.content_length
    want = most if sent is None else min(most, sent)
    chunks, total = [], 0
    while total < want:
        chunk = request.stream.read(min(1024 * 1024, want - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks), max(sent or 0, total)


def _handle(conn, incoming: Incoming) -> tuple[Outcome, int | None]:
    """Apply a delivery that passed screening and record it, together; record a refused one."""
    if (outcome := incoming.rejection) is not None:
        unsigned = current_app.config["ELEVENLABS_WEBHOOK_SECRET"] and not incoming.signature_valid
        if unsigned and not current_app.extensions["webhook_unsigned_budget"].take():
            metrics.record_unrecorded_delivery(incoming.endpoint)
            return outcome, None
    elif incoming.endpoint == deliveries.TRANSCRIPTION:
        # A new line and its record are one statement (one round trip, atomic by
        # itself); a line not saved changed nothing, and is recorded on its own.
        accepted = incoming.logged(Outcome(deliveries.ACCEPTED))
        outcome = apply.apply(conn, incoming.endpoint, incoming.body, received=accepted)
        if outcome.delivery_id is not None:
            return outcome, outcome.delivery_id
    else:
        # One transaction: the delivery's changes and its record commit together or
        # not at all. Not pipeline mode alone: its Sync commits what ran even when
        # our code raised between the two statements.
        with conn.transaction():
            price = current_app.config.get("ELEVENLABS_USD_PER_CREDIT")
            outcome = apply.apply(conn, incoming.endpoint, incoming.body, usd_per_credit=price)
            return outcome, deliveries.record(conn, incoming.logged(outcome), outcome)
    return outcome, deliveries.record(conn, incoming.logged(outcome), outcome)


@bp.record_once
def _make_unsigned_budget(state) -> None:
    per_minute = state.app.config.get("WEBHOOK_UNSIGNED_PER_MINUTE", UNSIGNED_PER_MINUTE)
    state.app.extensions["webhook_unsigned_budget"] = Budget(per_minute)


def _record_failure(conn, incoming: Incoming, reason: str, **kwargs) -> int | None:
    """Record a delivery that failed on our side, for replay; None when it could not be."""
    metrics.record_webhook_delivery(incoming.endpoint, deliveries.ERROR)
    if conn is None:
        return None
    try:
        named = payloads.identifiers(incoming.endpoint, payloads.parse_json(incoming.body))
    except payloads.Rejected:  # unreadable: it names nothing
        named = {}
    try:
        outcome = Outcome(deliveries.ERROR, reason, named)
        return deliveries.record(conn, incoming.logged(outcome), outcome, **kwargs)
    except (psycopg.Error, PoolTimeout):
        logger.exception("webhook %s could not be recorded", incoming.endpoint)
        return None


def _database_failed(conn, incoming: Incoming, exc: Exception) -> ApiError:
    """Record a delivery the database failed on, for replay; return the 503 to answer.

    A broken connection may be one killed backend or a failover, not a database
    down: the delivery is then recorded on a fresh connection if the pool has one.
    """
    reason = f"the database could not apply it just now ({type(exc).__name__}: {first_line(exc)})"
    logger.error("webhook %s: %s", incoming.endpoint, reason)
    if isinstance(exc, PoolTimeout):
        conn = None
    elif unreachable(exc, conn):
        try:
            conn = fresh_conn()
        except (psycopg.Error, PoolTimeout):
            conn = None
    delivery_id = _record_failure(conn, incoming, reason, http_status=503)
    if delivery_id is None:
        logger.error("webhook %s not recorded: database unavailable", incoming.endpoint)
        return ApiError(
            "The database is unavailable; the delivery was not recorded.",
            status=503,
            code="database_unavailable",
        )
    return ApiError(
        "The database could not apply this delivery just now; it is recorded for replay.",
        status=503,
        code="database_error",
        details={"reason": reason, "delivery_id": delivery_id},
    )
