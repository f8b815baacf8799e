"""Blueprint ``/driver_data``: calls to drivers, batches of them, suppressed numbers.

A call is committed (``initiating``, our own ``call_sid``) *before* ElevenLabs is
asked to dial, so every attempt leaves a row, ``initiated`` or ``failed``.
"""

import contextlib
import logging
from datetime import UTC, datetime

import psycopg
from flask import Blueprint, current_app, g, request, url_for
from psycopg_pool import PoolTimeout

import auth
import db
import transcription_helpers
from api import idempotency
from api.phone_numbers import mask_phone, mask_phones_in
from api.schemas import CallRequestSchema, CallSchema, CallWithTranscriptSchema, load
from db import get_conn, release_conn
from dispatch import batches, placing, progress, schemas, settings, suppressions
from dispatch.windows import Window
from elevenlabs.client import ElevenLabsClient
from errors import ApiError, error_response, first_line
from models import calls, outcomes
from observability import logs

log = logging.getLogger(__name__)
bp = Blueprint("driver_data", __name__, url_prefix="/driver_data")

CALL_REQUEST = CallRequestSchema()
CALL = CallSchema()
CALL_WITH_TRANSCRIPT = CallWithTranscriptSchema()
BATCH_REQUEST = schemas.BatchRequestSchema()
BATCH = schemas.BatchSchema()
SUPPRESSION_REQUEST = schemas.SuppressionRequestSchema()
SUPPRESSION = schemas.SuppressionSchema()
MAX_ID_CHARS = 100
# A batch may hold MAX_CALLS calls: ~120 bytes each with a name and a time zone,
# more with variables. MAX_CONTENT_LENGTH (1 MiB) would refuse one of 10,000.
BATCH_BODY_LIMIT = 16 * 1024 * 1024
CALL_FIELDS = ("driver_id", "phone_number", "driver_name")
ORDER_FIELDS = (*CALL_FIELDS, "variables")
DIALLING_SETTINGS = {
    "agent_id": "ELEVENLABS_AGENT_ID",
    "agent_phone_number_id": "ELEVENLABS_PHONE_NUMBER_ID",
}


@bp.record_once
def _attach_elevenlabs_client(state) -> None:
    state.app.extensions["elevenlabs"] = ElevenLabsClient.from_config(state.app.config)
    # Read once: a bad value refuses start-up in one line (ConfigError), not every batch with a 500.
    state.app.extensions["dispatch_settings"] = settings.load()
    state.app.extensions.setdefault("scrape_hooks", []).append(progress.record_for_scrape)


bp.after_request(idempotency.remember)


@bp.before_request
def require_bearer_token():
    """Refuse any request that does not carry one of API_TOKENS as its bearer token."""
    presented = auth.presented_token("bearer")
    if auth.accepted(presented, current_app.config["API_TOKENS"]):
        return None
    challenge = 'Bearer realm="driver_data"' + (', error="invalid_token"' if presented else "")
    body, status = error_response(
        401, "unauthorized", "A valid bearer token is required (Authorization: Bearer <token>)."
    )
    return body, status, {"WWW-Authenticate": challenge}


@bp.errorhandler(psycopg.OperationalError)
@bp.errorhandler(PoolTimeout)
def _database_unavailable(exc):
    reason = first_line(exc)
    if db.unreachable(exc, g.get("db_conn")):
        log.error("database unavailable: %s", reason)
        return error_response(503, "database_unavailable", "The database cannot be reached.")
    # Up, but it refused the statement (a lock or statement timeout): nothing was written.
    log.error("database refused the request: %s", reason)
    return error_response(
        503, "database_error", "The database refused the request.", {"reason": reason}
    )


@bp.post("/call-elevenlabs")
def create_call():
    """Write the call, then ask ElevenLabs to dial: 201 with the call, or 502 with why not."""
    order = load(CALL_REQUEST, request.get_json(), "call request")
    call_order = placing.CallOrder(**{k: order[k] for k in ORDER_FIELDS}, **_dialling_ids(order))
    key = idempotency.key_of()
    conn = get_conn()
    # The row (and its Idempotency-Key) is committed before any network I/O: that
    # order is the feature. Without a key it is one statement, committed on its own.
    with conn.transaction() if key else contextlib.nullcontext():
        earlier = idempotency.claim(conn, key, order, call_sid := calls.new_call_sid())
        if earlier is not None:
            return earlier
        fields = {name: order[name] for name in CALL_FIELDS}
        written = calls.create_unless_suppressed(conn, call_sid=call_sid, **fields)
        if written is None:
            raise suppressions.refusal(order["phone_number"])  # nothing written, key released
    release_conn()  # the wait on ElevenLabs must not hold a pool connection
    call, api_called_at = written
    logs.bind(call_sid=call_sid)
    log.info(
        "call %s created for driver %s to %s",
        call_sid,
        call.driver_id,
        mask_phone(call.phone_number),
    )
    call = _dial(call, call_order, api_called_at)
    return CALL.dump(call), 201, {"Location": url_for(".get_call", call_sid=call_sid)}


def _dial(call, order: placing.CallOrder, api_called_at: datetime):
    """Have the one call-placing path dial the written call; return it initiated, or raise."""
    client = current_app.extensions["elevenlabs"]
    try:
        placed = placing.dial(get_conn, client, call, order, api_called_at)
    except placing.OutcomeNotRecorded as exc:  # the row stays 'initiating': ops stuck lists it
        raise ApiError(
            "ElevenLabs answered, but the call's outcome could not be recorded; the call "
            "stays 'initiating'. Do not place it again if `placed` or `may_have_dialled` is true.",
            status=503,
            code="outcome_not_recorded",
            details={"call_sid": exc.call_sid, **exc.details, "database_reason": exc.reason},
        ) from None
    if (exc := placed.error) is not None:
        log.warning("call %s failed (%s): %s", call.call_sid, exc.kind, mask_phones_in(exc.reason))
        message = (
            "ElevenLabs' answer was lost or broken: the call may have been placed. It is "
            "recorded as failed; check it before placing it again."
            if exc.may_have_dialled
            else "ElevenLabs did not place the call; it is recorded as failed."
        )
        details = {
            "call_sid": call.call_sid,
            "reason": exc.reason,
            "kind": exc.kind,
            "may_have_dialled": exc.may_have_dialled,
        }
        raise ApiError(message, status=502, code="elevenlabs_failed", details=details)
    logs.bind(conversation_id=placed.call.conversation_id)
    return placed.call


@bp.get("/calls/<call_sid>")
def get_call(call_sid: str):
    """Return a call with its transcript lines in the order they were said, and its outcome."""
    conn = get_conn()
    call = calls.by_call_sid(conn, call_sid) if _plausible(call_sid) else None
    if call is None:
        raise ApiError(
            "No call has this call_sid.",
            status=404,
            code="call_not_found",
            details={"call_sid": call_sid} if _plausible(call_sid) else {},
        )
    lines = transcription_helpers.transcript(conn, call.conversation_id)
    outcome = outcomes.as_json(outcomes.of_call(conn, call.id))
    return CALL_WITH_TRANSCRIPT.dump({**vars(call), "transcript": lines, "outcome": outcome})


def _dialling_ids(order: dict) -> dict:
    """Return the agent and its number, from the request or settings; 503 until they are set."""
    config = current_app.config
    ids = {field: order[field] or config[setting] for field, setting in DIALLING_SETTINGS.items()}
    missing = [] if config["ELEVENLABS_API_KEY"] else ["ELEVENLABS_API_KEY"]
    missing += [
        f"{setting} (or {field} in the request)"
        for field, setting in DIALLING_SETTINGS.items()
        if not ids[field]
    ]
    if missing:
        raise ApiError(
            f"Calls cannot be placed until this is configured: {', '.join(missing)}.",
            status=503,
            code="not_configured",
            details={"missing": missing},
        )
    return ids


# --- Batches and suppressions: thin routes over dispatch/ (the worker dials) ---------


@bp.post("/call-batches")
def create_batch():
    """Store a batch of calls for the worker to place: 202 with its id, status and counts."""
    request.max_content_length = max(BATCH_BODY_LIMIT, current_app.config["MAX_CONTENT_LENGTH"])
    order = load(BATCH_REQUEST, request.get_json(), "batch")
    _dialling_ids(order)  # 503 now, not every entry failed later for want of an agent
    defaults = current_app.extensions["dispatch_settings"]
    given = order["window"]
    window = Window(given["start"], given["end"]) if given else defaults.calling_window
    conn = get_conn()
    batch_id = batches.create(
        conn, order, window=window, default_zone=defaults.calling_timezone, now=datetime.now(UTC)
    )
    return _summary(conn, batch_id), 202, {"Location": url_for(".get_batch", batch_id=batch_id)}


@bp.get("/call-batches/<batch_id>")
def get_batch(batch_id: str):
    """Return a batch: its status, counts per entry state and entries with their calls."""
    shown = batches.show(get_conn(), batch_id) if _plausible(batch_id) else None
    if shown is None:
        raise ApiError("No batch has this id.", status=404, code="batch_not_found")
    return BATCH.dump(shown)


def _plausible(key: str) -> bool:
    """Tell whether a path's id could be one of ours: short printable text (no NUL reaches SQL)."""
    return len(key) <= MAX_ID_CHARS and key.isprintable()


@bp.post("/call-batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    """Cancel what has not been dialled; calls already placed run to their end."""
    status = batches.cancel(get_conn(), batch_id) if _plausible(batch_id) else None
    if status is None:
        raise ApiError("No batch has this id.", status=404, code="batch_not_found")
    if status != "cancelled":
        raise ApiError(
            f"The batch is already {status}; nothing is left to cancel.",
            status=409,
            code="batch_finished",
            details={"batch_id": batch_id, "status": status},
        )
    return _summary(get_conn(), batch_id)


def _summary(conn, batch_id: str) -> dict:
    """Return a batch's id, status and counts per entry state, without reading its entries."""
    [batch] = batches.counted(conn, batch_id=batch_id, limit=1)
    return {key: batch[key] for key in ("batch_id", "status", "counts")}


@bp.put("/suppressions/<phone_number>")
def suppress_number(phone_number: str):
    """Put a number on the suppression list (201 new, 200 already there): never dialled."""
    number = schemas.phone_number_in_path(phone_number)
    body = load(SUPPRESSION_REQUEST, request.get_json() if request.data else {}, "suppression")
    row, created = suppressions.suppress(get_conn(), number, body["reason"])
    return SUPPRESSION.dump(row), 201 if created else 200


@bp.delete("/suppressions/<phone_number>")
def lift_suppression(phone_number: str):
    """Take a number off the suppression list: 204, or 404 when it was not on it."""
    if not suppressions.lift(get_conn(), schemas.phone_number_in_path(phone_number)):
        raise ApiError("This number is not suppressed.", status=404, code="not_suppressed")
    return "", 204


@bp.get("/suppressions")
def list_suppressions():
    """Return every suppressed number, newest first."""
    return {"suppressions": SUPPRESSION.dump(suppressions.listed(get_conn()), many=True)}
