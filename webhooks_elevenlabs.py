"""Blueprint ``/webhooks/elevenlabs``: what ElevenLabs sends back about our calls.

Every request is recorded in ``webhook_deliveries`` before it is answered,
whatever the answer: ElevenLabs never retries a 4xx, so the log is the only
trace of what was refused, and ``python -m ops replay`` replays it from there.
"""

import logging
import sys
import time
from dataclasses import dataclass

import psycopg
from flask import Blueprint, current_app, request
from psycopg_pool import PoolTimeout

from db import fresh_conn, get_conn, unreachable
from elevenlabs import payloads as payloads
from elevenlabs.signature import HEADER, SignatureError, verify
from errors import ApiError, first_line
from models import webhook_deliveries as deliveries
from observability import logs, metrics
from webhooks import apply
from webhooks.apply import Outcome

bp = Blueprint("webhooks_elevenlabs", __name__, url_prefix="/webhooks/elevenlabs")
logger = logging.getLogger(__name__)

# Bytes read per endpoint. A line is well under 1 kB; a post-call envelope is
# hundreds of kB for a long call, and post_call_audio carries base64 audio (MBs),
# which must not fail: ElevenLabs disables a webhook after 10 failures in a row.
READ_LIMITS = {deliveries.TRANSCRIPTION: 64 * 1024, deliveries.POST_CALL: 32 * 1024 * 1024}
# What the log keeps of a body: all of it up to 1 MiB when authentic (enough to
# replay any line or transcript); otherwise a prefix to inspect, never to replay:
# a body not known to be ElevenLabs' (anyone can send those, at any rate), an
# oversized one, or an event we acknowledge without storing (audio: MBs a call).
STORED_LIMIT = 1024 * 1024
INSPECTION_PREFIX = 4 * 1024

MESSAGES = {
    deliveries.REJECTED_SIGNATURE: (
        "The ElevenLabs-Signature header is missing or does not sign the body."
    ),
    deliveries.REJECTED_MALFORMED: "The webhook body cannot be used.",
    deliveries.UNKNOWN_CALL: "No call matches this webhook.",
    deliveries.NO_CONVERSATION_ID: (
        "The call has no conversation_id yet; the delivery is kept for replay."
    ),
    deliveries.CONFLICT: "The webhook contradicts what is recorded for its call.",
}


@dataclass
class Received:
    """A request as it arrived: the body read (up to the limit), its size, its signature."""

    endpoint: str
    body: bytes
    size: int
    oversized: bool
    signature_header: str | None
    signature_valid: bool | None = None

    def record(self, conn, outcome: Outcome, http_status: int | None = None) -> int:
        """Insert this delivery into the log with its outcome; return its id."""
        return deliveries.record(
            conn,
            **self._logged(kept_whole=outcome.outcome != deliveries.ACKNOWLEDGED),
            identifiers=outcome.identifiers,
            outcome=outcome.outcome,
            reason=outcome.reason,
            http_status=http_status,
        )

    def named(self) -> dict:
        """Return what the body names (call_sid, conversation_id, …); nothing if unreadable."""
        try:
            return payloads.identifiers(self.endpoint, payloads.parse_json(self.body))
        except payloads.Rejected:
            return {}

    def recorder(self, conn) -> "Recording":
        """Return this delivery's recorder for ``apply.apply``."""
        return Recording(conn, self)

    def _logged(self, *, kept_whole: bool = True) -> dict:
        """Return the log's columns that come from the request itself."""
        trusted = self.signature_valid is not False and not self.oversized
        keep = STORED_LIMIT if trusted and kept_whole else INSPECTION_PREFIX
        return {
            "endpoint": self.endpoint,
            "signature_valid": self.signature_valid,
            "signature_header": _printable(self.signature_header),
            "body": self.body[:keep],
            "body_size": self.size,
            "body_truncated": self.oversized or len(self.body) > keep,
        }


@dataclass
class Recording:
    """Records a delivery as a new log row: alone, or inside the statement that applies it."""

    conn: object
    received: Received

    def __call__(self, outcome: Outcome) -> int:
        """Insert the delivery with an outcome already decided; return its id."""
        return self.received.record(self.conn, outcome)

    def statement(self, identifiers: dict) -> tuple[str, dict]:
        """Return the insert as SQL reading its outcome from the applying statement."""
        return deliveries.record_statement(**self.received._logged(), identifiers=identifiers)


@bp.post("/transcription")
def transcription():
    """Save one line of a call's transcript (ElevenLabs' per-line webhook)."""
    return receive(deliveries.TRANSCRIPTION)


@bp.post("/post-call")
def post_call():
    """Apply a post-call webhook: the transcript and end of a call, or its failure."""
    return receive(deliveries.POST_CALL)


def receive(endpoint: str):
    """Read, check, apply and record one delivery; answer with its outcome."""
    received = read_request(endpoint)
    conn = None
    try:
        conn = get_conn()
        outcome, delivery_id = _handle(conn, received)
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        # 503, not 500: the database failed, not the delivery; ElevenLabs retries
        # 5xx when retries are enabled, and a recorded one can be replayed.
        raise _database_failed(conn, received, exc) from None
    except Exception:
        _record_error(received)
        raise
    metrics.record_webhook_delivery(endpoint, outcome.outcome)
    logs.bind(**{k: outcome.identifiers.get(k) for k in ("call_sid", "conversation_id")})
    return _respond(outcome, delivery_id)


def read_request(endpoint: str) -> Received:
    """Read at most the endpoint's limit plus one byte, so an oversized body is still logged."""
    limit = current_app.config.get("WEBHOOK_READ_LIMITS", READ_LIMITS)[endpoint]
    # Our own limit instead of MAX_CONTENT_LENGTH, whose 413 would come before we
    # could record the delivery (None here would mean "use the app's setting").
    request.max_content_length = sys.maxsize
    chunks, total = [], 0
    while total <= limit:
        chunk = request.stream.read(min(1024 * 1024, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    body = b"".join(chunks)
    return Received(
        endpoint=endpoint,
        body=body,
        size=max(request.content_length or 0, len(body)),
        oversized=len(body) > limit,
        signature_header=request.headers.get(HEADER),
    )


def _handle(conn, received: Received) -> tuple[Outcome, int]:
    rejection = _screen(received)
    if rejection is not None:
        return rejection, received.record(conn, rejection)
    return apply.apply(conn, received.endpoint, received.body, received.recorder(conn))


def _screen(received: Received) -> Outcome | None:
    """Return the rejection of an oversized or badly signed delivery, or None to go on."""
    if received.oversized:
        limit = len(received.body) - 1
        return Outcome(deliveries.REJECTED_MALFORMED, f"the body is over {limit} bytes")
    secret = current_app.config["ELEVENLABS_WEBHOOK_SECRET"]
    if not secret:
        return None  # development without a secret: unsigned webhooks are accepted
    try:
        verify(
            secret,
            received.signature_header,
            received.body,
            now=time.time(),
            past=current_app.config["WEBHOOK_TOLERANCE_PAST"],
            future=current_app.config["WEBHOOK_TOLERANCE_FUTURE"],
        )
    except SignatureError as exc:
        received.signature_valid = False
        return Outcome(deliveries.REJECTED_SIGNATURE, str(exc))
    received.signature_valid = True
    return None


def _record_error(received: Received) -> None:
    """Record a delivery our own code failed on, so it can be replayed after the fix."""
    metrics.record_webhook_delivery(received.endpoint, deliveries.ERROR)
    try:
        outcome = Outcome(deliveries.ERROR, "an unexpected error; see the logs", received.named())
        received.record(get_conn(), outcome)
    except (psycopg.Error, PoolTimeout):
        logger.exception("webhook %s could not be recorded", received.endpoint)


def _database_failed(conn, received: Received, exc: Exception) -> ApiError:
    """Record a delivery the database failed on, for replay; return the 503 to answer.

    A database that is up but refused (a lock or statement timeout, a deadlock)
    records it on the same connection. A connection that broke may be one killed
    backend or a failover, not a database down: the delivery is recorded on a
    fresh connection if the pool can give one. Only a delivery that could not be
    recorded at all is answered ``database_unavailable``.
    """
    reason = f"the database could not apply it just now ({type(exc).__name__}: {first_line(exc)})"
    logger.error("webhook %s: %s", received.endpoint, reason)
    metrics.record_webhook_delivery(received.endpoint, deliveries.ERROR)
    if isinstance(exc, PoolTimeout):
        conn = None
    elif unreachable(exc, conn):
        conn = _fresh_connection()
    delivery_id = None
    if conn is not None:
        try:
            outcome = Outcome(deliveries.ERROR, reason, received.named())
            delivery_id = received.record(conn, outcome, http_status=503)
        except (psycopg.Error, PoolTimeout):
            logger.exception("webhook %s could not be recorded", received.endpoint)
    if delivery_id is None:
        logger.error("webhook %s not recorded: database unavailable", received.endpoint)
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


def _fresh_connection():
    """Return a working connection instead of the broken one, or None when none can be had."""
    try:
        return fresh_conn()
    except (psycopg.Error, PoolTimeout):
        return None


def _respond(outcome: Outcome, delivery_id: int):
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


def _printable(header: str | None) -> str | None:
    """Return a header value fit for a text column (no NUL), at most 500 characters."""
    return header.replace("\x00", "")[:500] if header else None
