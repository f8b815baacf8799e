"""Placing one call, the one way the single-call endpoint and the batch worker dial.

The row is written and committed ``initiating`` before ElevenLabs is asked, once: a
request that may have reached ElevenLabs is never sent again (a retry can ring a driver
twice). Its answer moves the call to ``initiated`` or ``failed``; a 429 placed nothing.
A batch's dial after which the call may have been placed (a timeout, a cut answer, a
5xx, a bug of ours) leaves it ``initiating``, its reason noted: it counts in flight
until its webhook or reconciliation settles it.
"""

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import PoolTimeout

from elevenlabs.client import ElevenLabsClient, ElevenLabsError, OutboundCall
from errors import first_line
from models import calls
from observability import metrics

log = logging.getLogger(__name__)


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


class OutcomeNotRecorded(Exception):
    """ElevenLabs answered, but the database could not take its answer: the call stays
    ``initiating``. ``details`` say whether it was placed, so it is not placed again."""

    def __init__(self, call_sid: str, reason: str, details: dict):
        super().__init__(f"call {call_sid}: ElevenLabs' answer not recorded: {reason}")
        self.call_sid, self.reason, self.details = call_sid, reason, details


def dial(
    connect: Callable[[], psycopg.Connection],
    client: ElevenLabsClient,
    call: calls.Call,
    order: CallOrder,
    api_called_at: datetime,
    *,
    hold_if_unsure: bool = False,
) -> PlacedCall:
    """Ask ElevenLabs to dial a call already written and committed; record its answer.

    ``connect`` gives the connection the answer is written on, asked for only
    once ElevenLabs answered: the wait must not hold a pooled connection.
    ``hold_if_unsure`` (a batch's dial): a call that may have been placed stays
    ``initiating``, its reason noted, so it counts in flight and is not redialled
    until its webhook or reconciliation settles it. Without it (the single-call
    API, whose caller reads ``may_have_dialled`` in the 502) the call is ``failed``.
    """
    variables = {**order.variables, "call_sid": call.call_sid}
    if order.driver_name is not None:
        variables["driver_name"] = order.driver_name
    sent = time.monotonic()
    try:
        accepted = client.outbound_call(
            agent_id=order.agent_id,
            agent_phone_number_id=order.agent_phone_number_id,
            to_number=call.phone_number,
            dynamic_variables=variables,
        )
    except ElevenLabsError as exc:
        # Counted before any connection is taken: the answer happened even if writing it fails.
        metrics.record_elevenlabs_call(exc.kind, time.monotonic() - sent)
        refused = {"placed": False, "reason": exc.reason, "may_have_dialled": exc.may_have_dialled}
        held = hold_if_unsure and exc.may_have_dialled
        record = calls.note_may_have_dialled if held else calls.mark_failed
        with _recording(call.call_sid, refused):
            conn = connect()
            noted = record(conn, call.call_sid, reason=exc.reason, api_called_at=api_called_at)
            # Already ended by a webhook that outran this answer: the call as it stands.
            recorded = noted or calls.by_call_sid(conn, call.call_sid)
        metrics.record_call_outcome(calls.INITIATING if held else calls.FAILED)
        said = "may have been placed" if exc.may_have_dialled else "not placed"
        log.warning("call %s %s (%s)", call.call_sid, said, exc.kind)
        return PlacedCall(recorded, exc)
    except Exception:
        # Our own bug, perhaps after the request left: record it (held for
        # reconciliation, or failed: never left 'initiating' for ever), then fail loudly.
        (calls.note_may_have_dialled if hold_if_unsure else calls.mark_failed)(
            connect(),
            call.call_sid,
            reason="unexpected error in this service while calling ElevenLabs (see its logs); "
            "the call may have been placed",
            api_called_at=api_called_at,
        )
        raise
    metrics.record_elevenlabs_call("ok", time.monotonic() - sent)
    with _recording(call.call_sid, {"placed": True, "conversation_id": accepted.conversation_id}):
        return PlacedCall(_record_acceptance(connect(), call.call_sid, accepted, api_called_at))


@contextmanager
def _recording(call_sid: str, details: dict):
    """Turn a database failure while writing ElevenLabs' answer into ``OutcomeNotRecorded``."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        reason = first_line(exc)
        metrics.record_call_outcome(calls.INITIATING)  # the status the call is left in
        log.error("call %s: ElevenLabs answered but it was not recorded: %s", call_sid, reason)
        raise OutcomeNotRecorded(call_sid, reason, details) from None


def _record_acceptance(conn, call_sid: str, accepted: OutboundCall, api_called_at: datetime):
    """Store ElevenLabs' ids on the call and move it to ``initiated``; return it."""
    ids = {"twilio_call_sid": accepted.twilio_call_sid, "api_called_at": api_called_at}
    try:
        call = calls.mark_initiated(conn, call_sid, conversation_id=accepted.conversation_id, **ids)
    except psycopg.errors.UniqueViolation:
        # Another call already holds this conversation_id: keep the call, and say so on it.
        clash = (
            f"ElevenLabs answered with conversation_id {accepted.conversation_id}, which "
            "another call already has; this call keeps none until its post-call webhook"
        )
        log.error("call %s: %s", call_sid, clash)
        metrics.record_conversation_id_clash()
        call = calls.mark_initiated(conn, call_sid, conversation_id=None, note=clash, **ids)
    metrics.record_call_outcome(call.status)
    log.info("call %s initiated, conversation %s", call_sid, call.conversation_id)
    return call
