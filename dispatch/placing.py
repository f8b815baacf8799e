"""Placing one call: the row is written and committed, then ElevenLabs is asked, once.

Every dial of the service goes through here, with the single-call endpoint's
semantics: a call row ``initiating`` exists before any network I/O; ElevenLabs'
acceptance moves it to ``initiated`` with its ids; any refusal marks it ``failed``
with ElevenLabs' reason. A request that may have reached ElevenLabs is never sent
again (a retry can ring a driver twice); a 429 is a call that was not placed.
"""

import logging
import time
from dataclasses import dataclass

import psycopg

from elevenlabs.client import ElevenLabsClient, ElevenLabsError
from models import calls
from observability import metrics

log = logging.getLogger(__name__)

RATE_LIMITED = "rate_limited"  # ElevenLabs' 429: over its concurrency, nothing dialled


@dataclass(frozen=True)
class CallOrder:
    """Whom to call and with which agent: what a request or a batch entry asks for."""

    driver_id: int
    phone_number: str
    driver_name: str | None
    variables: dict
    agent_id: str
    agent_phone_number_id: str


@dataclass(frozen=True)
class PlacedCall:
    """The call as recorded after ElevenLabs answered, and its refusal when it refused."""

    call: calls.Call
    error: ElevenLabsError | None = None

    @property
    def rate_limited(self) -> bool:
        """Tell whether ElevenLabs refused for capacity: the call was not placed, try later."""
        return self.error is not None and self.error.kind == RATE_LIMITED


def write_call(conn, order: CallOrder) -> calls.Call:
    """Insert the call ``initiating``; committed at once on an autocommit connection."""
    return calls.create(
        conn,
        driver_id=order.driver_id,
        phone_number=order.phone_number,
        driver_name=order.driver_name,
    )


def place_call(conn, client: ElevenLabsClient, order: CallOrder) -> PlacedCall:
    """Write the call, commit it, then ask ElevenLabs to dial it; return what was recorded."""
    return dial(conn, client, write_call(conn, order), order)


def dial(conn, client: ElevenLabsClient, call: calls.Call, order: CallOrder) -> PlacedCall:
    """Ask ElevenLabs to dial a call already written and committed; record its answer."""
    variables = {**order.variables, "call_sid": call.call_sid}
    if order.driver_name is not None:
        variables["driver_name"] = order.driver_name
    # The database's clock, after the commit: created_at <= api_called_at on one clock.
    api_called_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    sent = time.monotonic()
    try:
        accepted = client.outbound_call(
            agent_id=order.agent_id,
            agent_phone_number_id=order.agent_phone_number_id,
            to_number=call.phone_number,
            dynamic_variables=variables,
        )
    except ElevenLabsError as exc:
        metrics.record_elevenlabs_call(exc.kind, time.monotonic() - sent)
        failed = calls.mark_failed(
            conn, call.call_sid, reason=exc.reason, api_called_at=api_called_at
        )
        metrics.record_call_outcome(calls.FAILED)
        log.warning("call %s not placed (%s)", call.call_sid, exc.kind)
        return PlacedCall(failed or calls.by_call_sid(conn, call.call_sid), exc)
    except Exception:
        # Our own bug must not leave the row 'initiating' for ever: record it, then fail loudly.
        calls.mark_failed(
            conn,
            call.call_sid,
            reason="unexpected error in this service while calling ElevenLabs (see its logs); "
            "the call may have been placed",
            api_called_at=api_called_at,
        )
        raise
    metrics.record_elevenlabs_call("ok", time.monotonic() - sent)
    ids = {"twilio_call_sid": accepted.twilio_call_sid, "api_called_at": api_called_at}
    try:
        recorded = calls.mark_initiated(
            conn, call.call_sid, conversation_id=accepted.conversation_id, **ids
        )
    except psycopg.errors.UniqueViolation:
        # Another call already holds this conversation_id; keep the call, not the clash.
        log.error("call %s: its conversation_id belongs to another call", call.call_sid)
        recorded = calls.mark_initiated(conn, call.call_sid, conversation_id=None, **ids)
    metrics.record_call_outcome(recorded.status)
    return PlacedCall(recorded)
