"""``Idempotency-Key`` on call creation, with Stripe's semantics (README: "Retrying safely").

A retry gets the first request's answer and never dials again; 422 with another
body, 409 naming the call while the first has no answer yet.
"""

import hashlib
import json
import logging
import re

import psycopg
from flask import g, request, url_for
from psycopg_pool import PoolTimeout

from db import get_conn
from errors import ApiError, first_line
from models import calls, idempotency_keys

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
# Stripe's limit; printable ASCII without spaces, so a key is safe in any log line.
KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")
# Answers that are the call's outcome; a 503 or 500 left it to be looked up instead.
REMEMBERED = (201, 502)


def key_of() -> str | None:
    """Return the request's Idempotency-Key, None without one; 400 when it is malformed."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY.match(key):
        raise ApiError(
            f"{HEADER} must be 1 to 255 printable ASCII characters without spaces.",
            code="invalid_idempotency_key",
        )
    return key


def claim(conn, key: str | None, order: dict, call_sid: str):
    """Hold ``key`` for ``call_sid``; return the earlier answer when it was held."""
    if key is None:
        return None
    # The validated request, canonically: the same call asked twice digests the same.
    canonical = json.dumps(order, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    held = idempotency_keys.claim(conn, key, digest, call_sid)
    if held is None:
        g.idempotency_key = key
        return None
    if held.request_hash != digest:
        raise ApiError(
            f"This {HEADER} was used with a different request body; use a new key for a new call.",
            status=422,
            code="idempotency_key_reused",
            details={"call_sid": held.call_sid},
        )
    if held.response_status is not None:
        headers = {"Idempotent-Replayed": "true"}
        if held.response_status == 201:
            headers["Location"] = url_for(".get_call", call_sid=held.call_sid)
        return held.response_body, held.response_status, headers
    call = calls.by_call_sid(conn, held.call_sid)
    raise ApiError(
        f"An earlier request with this {HEADER} has no answer recorded (still running, or "
        "stopped before it answered); look its call up instead of placing it again.",
        status=409,
        code="idempotency_key_in_progress",
        details={"call_sid": held.call_sid, "status": call.status if call else None},
    )


def remember(response):
    """Keep a keyed request's outcome for its retries; a failure to keep it is only logged."""
    key = g.pop("idempotency_key", None)
    if key is None or response.status_code not in REMEMBERED:
        return response
    try:
        idempotency_keys.remember(get_conn(), key, response.status_code, response.get_json())
    except (psycopg.Error, PoolTimeout) as exc:
        # The retry then answers 409 with the call: still never a second dial.
        log.error("answer to an idempotent request not kept: %s", first_line(exc))
    return response


# Stripe's promise: a key answers its retries for at least 24 h. The worker prunes
# hourly, so a key lives 24 to 25 h.
def prune(conn, *, hours: int = 24, batch: int = 1_000) -> int:
    """Delete the keys past their retention, ``batch`` at a time; return how many."""
    return idempotency_keys.delete_expired(conn, hours, batch)
