"""``python -m ops reconcile [--older-than MINUTES] [--dry-run]``: no call stays open.

ElevenLabs sends no in-call events and a call that reaches voicemail sends no
failure, so a call ``initiating`` or ``initiated`` for too long is settled from
ElevenLabs' conversation (found by our call_sid when the call has no
conversation_id) through the post-call webhook's own code: a webhook arriving
afterwards is a ``duplicate``, and the reverse. The RUNBOOK says what it prints.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import class_row

import config
from elevenlabs.conversations import Conversations, Unavailable
from elevenlabs.payloads import Rejected
from models import calls
from models import webhook_deliveries as deliveries
from models.calls import Call
from observability import metrics
from ops import database, orphan_calls
from ops.stuck_calls import minutes_argument
from webhooks import post_call

MAX_CALLS_PER_RUN = 500  # oldest first from where the last run stopped (``Rotation``)
STILL_OPEN = ("initiated", "in-progress", "processing")
# Far past any call: a conversation ElevenLabs still calls under way will never settle
# the call. It is failed. (A 404 is left and reported every run, as the design says.)
GIVE_UP_HOURS = 24
GIVE_UP_AFTER = timedelta(hours=GIVE_UP_HOURS)

# 'initiating' and 'initiated' written out, not bound: a generic plan can then use
# a partial index on open calls. The calls after (created_at, call_sid) come first
# (false sorts before true), then from the oldest again: calls a run cannot settle
# do not take every slot of every run. No cursor (NULL): oldest first.
OPEN_CALLS = f"""
SELECT {calls.COLUMNS} FROM calls
 WHERE status IN ('initiating', 'initiated') AND created_at < now() - make_interval(secs => %s)
 ORDER BY (created_at, call_sid) <= (%s::timestamptz, %s::text), created_at, call_sid
 LIMIT %s
"""

# What became of a call this run; CHANGES are the ones a dry run would make.
COMPLETED, FAILED, ATTACHED = "completed", "failed", "given its conversation"
IN_PROGRESS, LEFT, UNCHANGED = "still under way", "left for the next run", "unchanged"
CHANGES = (COMPLETED, FAILED, ATTACHED)


@dataclass
class Rotation:
    """Where the last run stopped (the last call it looked at), for a process's next run."""

    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class Run:
    """One run's settings, passed to every step."""

    conn: psycopg.Connection
    client: Conversations
    dry_run: bool
    usd_per_credit: Decimal | None
    out: object


def reconcile(
    conn,
    client,
    older_than_minutes: float,
    dry_run=False,
    out=print,
    usd_per_credit=None,
    budget_seconds: float | None = None,
    rotation: Rotation | None = None,
) -> dict[str, int]:
    """Settle the calls open longer than this from ElevenLabs' conversations; count the results.

    With ``budget_seconds``, no look-up starts past it: the calls not reached are
    the next run's, so a slow ElevenLabs cannot make runs pile up. With
    ``rotation``, the run starts after the last call the previous one looked at.
    """
    run = Run(conn, client, dry_run, usd_per_credit, out)
    stop_at = None if budget_seconds is None else time.monotonic() + budget_seconds
    after = (rotation.after if rotation else None) or (None, None)
    with conn.cursor(row_factory=class_row(Call)) as cur:
        open_calls = cur.execute(
            OPEN_CALLS, (older_than_minutes * 60, *after, MAX_CALLS_PER_RUN)
        ).fetchall()
    counts = dict.fromkeys((*CHANGES, IN_PROGRESS, LEFT, UNCHANGED), 0)
    # Orphans first: their search is the one the budget could otherwise never reach,
    # and one not reached is left (reported) rather than passed over by the rotation.
    orphans = [call for call in open_calls if call.conversation_id is None]
    if orphans:
        found, incomplete = orphan_calls.find(conn, client, orphans, stop_at)
        for call in orphans:
            counts[_orphan(run, call, found.get(call.call_sid), incomplete.get(call.call_sid))] += 1
    out_of_time = False
    for call in (call for call in open_calls if call.conversation_id is not None):
        if orphan_calls.out_of_time(stop_at):
            out_of_time = True
            break
        if rotation is not None:
            rotation.after = (call.created_at, call.call_sid)
        counts[_from_details(run, call)] += 1
    said = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or (
        "none looked at" if out_of_time else "none open"
    )
    line = (
        f"reconcile: {'would change' if dry_run else 'changed'} "
        f"{sum(counts[kind] for kind in CHANGES)} of the calls open for more than "
        f"{older_than_minutes:g} minutes ({said})"
    )
    if out_of_time:
        line += f"; {budget_seconds:g} s spent: the next run goes on"
    elif len(open_calls) == MAX_CALLS_PER_RUN:
        line += f"; more than {MAX_CALLS_PER_RUN} open: run again for the rest"
    out(line + ("; dry run: nothing changed" if dry_run else ""))
    if not dry_run:
        metrics.record_reconcile_run(counts)
    return counts


def _from_details(run: Run, call: Call) -> str:
    """Settle a call from its conversation's details; return what became of it."""
    try:
        document = run.client.conversation(call.conversation_id)
    except Unavailable as exc:  # 404 too, as the design says: reported, left for the next run
        run.out(f"{call.call_sid}: {LEFT}: conversation {call.conversation_id}: {exc.reason}")
        return LEFT
    return settle(run, call, document)


def _fail(run: Run, call: Call, said: str, reason: str) -> str:
    """Fail a call ElevenLabs will never settle, for ``reason``; say and return what it became."""
    if run.dry_run:
        run.out(f"{said}: would be failed, {reason} (dry run)")
        return FAILED
    if calls.mark_failed(run.conn, call.call_sid, reason=reason) is None:
        run.out(f"{said}, but it ended meanwhile: {UNCHANGED}")
        return UNCHANGED
    metrics.record_call_ended(calls.FAILED, None)
    run.out(f"{said}: failed, {reason}")
    return FAILED


def _orphan(run: Run, call: Call, document: dict | None, incomplete: str | None) -> str:
    """Settle a call without conversation_id from its conversation found by call_sid, or fail it."""
    if document is not None:
        return settle(run, call, document)
    if incomplete:  # the list was not read whole: absence proves nothing
        run.out(f"{call.call_sid}: no conversation found yet ({incomplete}): {LEFT}")
        return LEFT
    if call.status == calls.INITIATED:  # ElevenLabs accepted it: placed, whatever the list says
        run.out(f"{call.call_sid}: accepted without a conversation_id, none found yet: {LEFT}")
        return LEFT
    return _fail(
        run, call, f"{call.call_sid}: no conversation at ElevenLabs names it", calls.NEVER_PLACED
    )


def settle(run: Run, call: Call, document: dict) -> str:
    """Apply what ElevenLabs knows of the call's conversation; say and return what became of it."""
    status, conversation_id = document.get("status"), document.get("conversation_id")
    said = f"{call.call_sid}: conversation {conversation_id} is {status}"
    if status in STILL_OPEN and call.conversation_id is not None:
        if datetime.now(UTC) - call.created_at > GIVE_UP_AFTER:  # longer than any call
            return _fail(run, call, said, f"still {status} at ElevenLabs after {GIVE_UP_HOURS} h")
        run.out(f"{said}: {IN_PROGRESS} at ElevenLabs; left alone")
        return IN_PROGRESS
    if status not in (*STILL_OPEN, "done", "failed"):
        run.out(f"{said}, a status we do not know: {LEFT}")
        return LEFT
    kind = ATTACHED if status in STILL_OPEN else COMPLETED if status == "done" else FAILED
    if run.dry_run:
        run.out(f"{said}: would be {kind} (dry run)")
        return kind
    if kind == ATTACHED:  # under way: record the conversation found for it
        try:
            with run.conn.transaction():  # a savepoint: a clash must not end the run
                calls.mark_initiated(
                    run.conn,
                    call.call_sid,
                    conversation_id=conversation_id,
                    twilio_call_sid=None,
                    api_called_at=None,
                )
        except psycopg.errors.UniqueViolation:
            run.out(f"{said}, but another call has it: {LEFT}")
            return LEFT
        run.out(f"{said}: {kind}")
        return kind
    try:
        with run.conn.transaction():
            outcome = post_call.apply(
                run.conn, envelope(document), usd_per_credit=run.usd_per_credit
            )
    except Rejected as rejection:
        run.out(f"{said}, but it cannot be applied ({rejection.outcome.reason}): {LEFT}")
        return LEFT
    metrics.record_ending(outcome)
    if outcome.outcome != deliveries.ACCEPTED:  # a webhook settled it meanwhile
        run.out(f"{said}: {UNCHANGED} ({outcome.outcome}: {outcome.reason})")
        return UNCHANGED
    run.out(f"{said}: {kind} ({outcome.reason})")
    return kind


def envelope(document: dict) -> dict:
    """Return the post-call webhook ElevenLabs would have sent for a finished conversation."""
    if document.get("status") == "done":
        return {"type": post_call.POST_CALL_TRANSCRIPTION, "data": document}
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    return {
        "type": post_call.CALL_INITIATION_FAILURE,
        "data": {
            "conversation_id": document.get("conversation_id"),
            "failure_reason": failure_reason(metadata.get("termination_reason")),
            "conversation_initiation_client_data": document.get(
                "conversation_initiation_client_data"
            ),
        },
    }


def failure_reason(termination_reason) -> str:
    """Return the webhook's failure_reason for a failed conversation's termination reason.

    The details carry no failure_reason; their termination reason names Twilio's
    outcome ("Call busy"), which redials read as the webhook's ``busy``/``no-answer``.
    """
    said = termination_reason.lower() if isinstance(termination_reason, str) else ""
    if "busy" in said:
        return "busy"
    if "no-answer" in said or "no answer" in said:
        return "no-answer"
    return termination_reason if said else "unknown"


def main(argv: list[str]) -> int:
    """Exit 1 when ElevenLabs could not be asked about some call."""
    parser = database.parser(
        "reconcile", "Settle the calls left open from ElevenLabs' conversations."
    )
    # 15, CALL_MAX_MINUTES' default: past it a call holds no slot.
    parser.add_argument(
        "--older-than", type=minutes_argument, default=15.0, metavar="MINUTES", help="default: 15"
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing")
    args = parser.parse_args(argv)
    settings = config.from_env()
    if not settings["ELEVENLABS_API_KEY"]:
        raise config.ConfigError("ELEVENLABS_API_KEY is not set: reconciling asks ElevenLabs")
    with database.connect(args.database_url, "reconcile") as conn:
        counts = reconcile(
            conn,
            Conversations.from_config(settings),
            args.older_than,
            dry_run=args.dry_run,
            usd_per_credit=settings.get("ELEVENLABS_USD_PER_CREDIT"),
        )
    return 1 if counts[LEFT] else 0
