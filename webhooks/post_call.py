"""ElevenLabs' post-call webhooks: a whole transcript that completes a call, or a failure.

The call is found by the ``call_sid`` we passed as a dynamic variable, else by
``data.conversation_id``, else, for an event that names no call_sid, by Twilio's
call SID when exactly one call has it; a call still without a conversation_id
takes the envelope's. A transcription event also carries the
call's outcome, stored in the same transaction that completes the call.
Reconciliation applies a conversation it fetched through this same ``apply``.
"""

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

import transcription_helpers as helpers
from elevenlabs import payloads
from elevenlabs.payloads import Rejected, informational, malformed, number, obj, text
from models import calls, outcomes
from models import webhook_deliveries as deliveries
from models.calls import Call
from models.webhook_deliveries import Outcome
from webhooks import call_outcome

POST_CALL_TRANSCRIPTION = "post_call_transcription"
CALL_INITIATION_FAILURE = "call_initiation_failure"
# Where each event type carries Twilio's call SID: (metadata's member, its key).
TWILIO_CALL_SID = {
    POST_CALL_TRANSCRIPTION: ("phone_call", "call_sid"),
    CALL_INITIATION_FAILURE: ("body", "CallSid"),
}


@dataclass(frozen=True)
class PostCallEvent:
    """What we use of a post-call envelope, checked."""

    type: str
    call_sid: str | None
    conversation_id: str | None
    twilio_call_sid: str | None
    failure_reason: str | None = None
    start: datetime | None = None
    turns: tuple = ()
    call_duration_secs: int | None = None
    termination_reason: str | None = None
    outcome: outcomes.Outcome | None = None
    notes: tuple[str, ...] = ()  # what was cut or ignored, said in the delivery's reason


def apply(conn, document, *, usd_per_credit: Decimal | None = None) -> Outcome:
    """Apply a post-call envelope; return its outcome, or raise Rejected having changed nothing.

    The caller runs it in a transaction (or a savepoint) that a Rejected rolls back,
    and counts the call its ``Outcome.ended`` names once that transaction commits.
    """
    envelope = obj(document, "the body")
    event_type = text(envelope.get("type"), "type")
    if event_type not in (POST_CALL_TRANSCRIPTION, CALL_INITIATION_FAILURE):
        return Outcome(deliveries.ACKNOWLEDGED, f"{event_type} events are acknowledged, not stored")
    data = obj(envelope.get("data"), "data")
    event = parse(event_type, data, usd_per_credit, sent_at=envelope.get("event_timestamp"))
    call = attach_conversation(conn, find_call(conn, event), event)
    end = _fail if event.type == CALL_INITIATION_FAILURE else _complete
    outcome = end(conn, call, event)
    return dataclasses.replace(outcome, reason="; ".join((outcome.reason, *event.notes)))


def parse(
    event_type: str, data: dict, usd_per_credit: Decimal | None = None, *, sent_at=None
) -> PostCallEvent:
    """Return the checked event of an envelope's ``data``, or raise Rejected.

    ``sent_at`` is the envelope's ``event_timestamp``: with the call's length, it
    times the lines of a transcript that comes without the call's start.
    """
    metadata = obj(data.get("metadata"), "data.metadata", required=False)
    notes = []  # what was cut or ignored of fields kept only for the record
    ids = {
        "call_sid": payloads.call_sid_variable(data),
        "conversation_id": text(
            data.get("conversation_id"), "data.conversation_id", required=False
        ),
        "twilio_call_sid": _twilio_call_sid(event_type, metadata, notes),
    }
    if all(value is None for value in ids.values()):
        raise malformed(
            "names no call: dynamic_variables.call_sid, conversation_id "
            "and Twilio's call SID are all missing"
        )
    if event_type == CALL_INITIATION_FAILURE:
        reason = informational(data.get("failure_reason"), "data.failure_reason", notes)
        return PostCallEvent(event_type, **ids, failure_reason=reason, notes=tuple(notes))
    outcome = call_outcome.of_conversation(data, usd_per_credit=usd_per_credit, notes=notes)
    turns = _turns(data.get("transcript"), notes)
    start = _start(metadata, sent_at, outcome.duration_secs, len(turns), notes) if turns else None
    turns = _timed(turns, start, notes)
    return PostCallEvent(
        event_type,
        **ids,
        start=start,
        turns=turns,
        call_duration_secs=outcome.duration_secs,
        termination_reason=outcome.termination_reason,
        outcome=outcome,
        notes=tuple(notes),
    )


def _twilio_call_sid(event_type: str, metadata: dict, notes: list) -> str | None:
    # Twilio's own fields, passed through as they come, serve only to find the
    # call: a shape we do not know is ignored (and noted) rather than refused.
    where, key = TWILIO_CALL_SID[event_type]
    holder = metadata.get(where)
    if holder is None:
        return None
    if not isinstance(holder, dict):
        notes.append(f"data.metadata.{where} ignored: not an object")
        return None
    return informational(holder.get(key), f"data.metadata.{where}.{key}", notes, cut=False)


def _turns(value, notes: list) -> list[dict]:
    """Return the turns that carry a message, with a usable role and time in call.

    A turn that is not an object, or whose message, role or time cannot be used,
    is skipped and noted rather than refused: refusing it would refuse the call's
    end and outcome with it, and no replay could apply them.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed("data.transcript must be an array")
    turns, skipped = [], []
    for number_, turn in enumerate(value):
        where = f"data.transcript[{number_}]"
        try:
            turn = obj(turn, where)
            message = text(
                turn.get("message"),
                f"{where}.message",
                required=False,
                max_length=payloads.MAX_MESSAGE_LENGTH,
            )
            if message is None:  # a tool call or silence: not a line
                continue
            role = text(turn.get("role"), f"{where}.role", max_length=payloads.MAX_SPEAKER_LENGTH)
            seconds = number(turn.get("time_in_call_secs"), f"{where}.time_in_call_secs")
        except Rejected as rejection:
            skipped.append(rejection.outcome.reason)
            continue
        turns.append({"role": role, "message": message, "time_in_call_secs": seconds, "at": where})
    _note_skipped(skipped, notes)
    return turns


def _start(metadata: dict, sent_at, duration_secs: int | None, lines: int, notes: list):
    """Return the call's start, else when the event was sent less the call's length, else None."""
    field = "data.metadata.start_time_unix_secs"
    try:
        return payloads.timestamp(metadata["start_time_unix_secs"], field)
    except KeyError:
        problem = f"{field} is missing or null"
    except Rejected as rejection:  # a null one is "missing or null" here too
        problem = rejection.outcome.reason
    if sent_at is not None and duration_secs is not None:
        with contextlib.suppress(Rejected):
            start = payloads.timestamp(sent_at, "event_timestamp")
            notes.append(f"{problem}: lines timed from event_timestamp - call_duration_secs")
            return start - timedelta(seconds=duration_secs)
    notes.append(f"{problem} and cannot be worked out: {lines} lines not stored")
    return None


def _timed(turns: list[dict], start: datetime | None, notes: list) -> tuple:
    """Return the turns whose time falls within the years we accept; note the others."""
    if start is None:
        return ()
    kept, skipped = [], []
    for turn in turns:
        where = turn.pop("at")
        try:
            payloads.at(start, turn["time_in_call_secs"], f"{where}'s time in call")
        except Rejected as rejection:
            skipped.append(rejection.outcome.reason)
            continue
        kept.append(turn)
    _note_skipped(skipped, notes)
    return tuple(kept)


def _note_skipped(reasons: list[str], notes: list) -> None:
    # One note however many: the first turn's reason, and how many more.
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        notes.append(f"{reasons[0]}: turn skipped{more}")


def no_call_has(named: dict) -> str:
    """Say which identifiers no call matched, for an ``unknown_call`` outcome."""
    return "no call has " + " or ".join(
        f"{key} {value!r}" for key, value in named.items() if value is not None
    )


def find_call(conn, event: PostCallEvent) -> Call:
    """Return the call an event is about, or raise Rejected (unknown_call, conflict)."""
    for value, lookup in (
        (event.call_sid, calls.by_call_sid),
        (event.conversation_id, calls.by_conversation_id),
    ):
        if value is not None and (call := lookup(conn, value)) is not None:
            return call
    named = {"call_sid": event.call_sid, "conversation_id": event.conversation_id}
    # Twilio's SID only for an event without our call_sid (a failure carries none,
    # and its conversation_id is new to a call ElevenLabs answered without one): a
    # call_sid that names no call must not let a weaker key pick another call.
    if event.call_sid is not None or event.twilio_call_sid is None:
        raise Rejected(deliveries.UNKNOWN_CALL, no_call_has(named))
    found = calls.by_twilio_call_sid(conn, event.twilio_call_sid)
    if not found:
        named["twilio_call_sid"] = event.twilio_call_sid
        raise Rejected(deliveries.UNKNOWN_CALL, no_call_has(named))
    if len(found) > 1:
        raise Rejected(
            deliveries.CONFLICT,
            f"Twilio's call SID {event.twilio_call_sid!r} is on more than one call "
            f"({', '.join(call.call_sid for call in found)}): not guessing which",
        )
    return found[0]


def attach_conversation(conn, call: Call, event: PostCallEvent) -> Call:
    """Give the call the event's conversation_id if it has none; refuse a contradiction."""
    wanted = event.conversation_id
    if wanted is None or call.conversation_id == wanted:
        return call
    if call.conversation_id is None:
        attached = None
        # A savepoint: another call holding the id must not abort the delivery's transaction.
        with contextlib.suppress(psycopg.errors.UniqueViolation), conn.transaction():
            attached = calls.attach_conversation(conn, call.call_sid, wanted)
        # Judge by what the row holds now, not by what we read before: meanwhile
        # a twin delivery or ElevenLabs' answer to our call request may have
        # given this very call this very id, which agrees.
        call = attached or calls.by_call_sid(conn, call.call_sid)
        if call.conversation_id == wanted:
            return call
    if call.conversation_id is not None:
        said = f"call {call.call_sid} has conversation_id {call.conversation_id!r}"
        raise Rejected(deliveries.CONFLICT, f"{said} but the event names {wanted!r}")
    owner = calls.by_conversation_id(conn, wanted)
    holder = f"call {owner.call_sid}" if owner is not None else "another call"
    raise Rejected(
        deliveries.CONFLICT,
        f"the event gives call {call.call_sid} conversation_id {wanted!r}, but {holder} has it",
    )


def _complete(conn, call: Call, event: PostCallEvent) -> Outcome:
    """Save the transcript and the outcome, and complete the call; a repeat changes nothing."""
    if event.turns and call.conversation_id is None:
        # Reconciliation reads only open calls: for an ended one, nothing will.
        helps = (
            "ops reconcile settles the call from ElevenLabs by its call_sid"
            if call.status in (calls.INITIATING, calls.INITIATED)
            else f"the call is {call.status}: nothing will file these lines"
        )
        raise Rejected(
            deliveries.NO_CONVERSATION_ID,
            f"call {call.call_sid} has no conversation_id and the event names none; {helps}",
        )
    new_lines = (
        helpers.save_post_call_transcript(conn, call.conversation_id, event.start, event.turns)
        if event.turns
        else 0
    )
    completed = calls.mark_completed(
        conn,
        call.call_sid,
        call_duration_secs=event.call_duration_secs,
        termination_reason=event.termination_reason,
        twilio_call_sid=event.twilio_call_sid,
    )
    outcome_saved = outcomes.save(conn, call.id, event.outcome)
    if completed is None and not new_lines and not outcome_saved:
        return Outcome(
            deliveries.DUPLICATE, "transcript, outcome and completion were all recorded already"
        )
    said = "outcome recorded" if outcome_saved else "outcome unchanged"
    # Completing clears a failure, or a held dial's unconfirmed answer, from the call
    # row (calls.mark_completed): the delivery log keeps it.
    cleared = {calls.FAILED: "it had failed", calls.INITIATING: "its dial was unconfirmed"}
    had = (
        f" ({cleared[call.status]}: {call.failure_reason})"
        if completed and call.status in cleared and call.failure_reason
        else ""
    )
    return Outcome(
        deliveries.ACCEPTED,
        f"{new_lines} new lines; {said}; call {call.call_sid} completed{had}",
        ended=(calls.COMPLETED, event.outcome.call_successful) if completed else None,
    )


def _fail(conn, call: Call, event: PostCallEvent) -> Outcome:
    """Mark the call failed, unless it already ended."""
    reason = event.failure_reason or "unknown"
    if calls.mark_failed(conn, call.call_sid, reason=reason) is not None:
        said = f"call {call.call_sid} failed: {reason}"
        return Outcome(deliveries.ACCEPTED, said, ended=(calls.FAILED, None))
    # What stopped the update is the status now, not the one read before it: a
    # completion may have been committed in between.
    status = calls.by_call_sid(conn, call.call_sid).status
    if status == calls.COMPLETED:
        return Outcome(
            deliveries.STALE,
            f"call {call.call_sid} already completed; a late failure cannot undo it",
        )
    return Outcome(deliveries.DUPLICATE, f"call {call.call_sid} was already {status}")
