"""Calls without a conversation_id, looked for at ElevenLabs by the call_sid we passed it.

Its conversation, if any, started within minutes of the row: only that window of
the list is read, a bounded number of pages, and each conversation no call of
ours has is fetched for its dynamic variables (the list's items carry none).
"""

import contextlib
import time

from elevenlabs import payloads
from elevenlabs.conversations import PAGE_SIZE, Unavailable
from models.calls import Call

MARGIN_SECONDS = 15 * 60  # clocks apart, and the ringing before a conversation starts
MAX_PAGES = 10
# Orphans created this close share one window of the list (at most 45 minutes wide).
GROUP_SECONDS = MARGIN_SECONDS
OUT_OF_TIME = "the run's time ran out"

KNOWN = "SELECT conversation_id FROM calls WHERE conversation_id = ANY(%s)"


def find(conn, client, orphans: list[Call], stop_at: float | None = None) -> tuple[dict, dict]:
    """Return the orphans' conversations by call_sid, and for the others why absence proves nothing.

    Orphans created close together share one window of the list; each group is
    read on its own, so one old orphan never widens the window of every other
    past what can be read whole. No read starts past ``stop_at``
    (``time.monotonic()``), if given.
    """
    found, incomplete = {}, {}
    for group in _by_time(orphans):
        group_found, reason = _find_group(conn, client, group, stop_at)
        found.update(group_found)
        if reason:
            incomplete.update({call.call_sid: reason for call in group})
    return found, incomplete


def out_of_time(stop_at: float | None) -> bool:
    """Whether a run's budget (a ``time.monotonic()`` to stop at, or None) is spent."""
    return stop_at is not None and time.monotonic() >= stop_at


def _by_time(orphans: list[Call]) -> list[list[Call]]:
    """Split the orphans, oldest first, into groups created within GROUP_SECONDS of their first."""
    groups = []
    for call in sorted(orphans, key=lambda call: call.created_at):
        if groups and (call.created_at - groups[-1][0].created_at).total_seconds() <= GROUP_SECONDS:
            groups[-1].append(call)
        else:
            groups.append([call])
    return groups


def _find_group(conn, client, orphans: list[Call], stop_at: float | None):
    """Return one group's conversations by call_sid, and why absence proves nothing (or None)."""
    wanted, found, cursor = {call.call_sid for call in orphans}, {}, None
    started = (
        int(orphans[0].created_at.timestamp()) - MARGIN_SECONDS,
        int(orphans[-1].created_at.timestamp()) + MARGIN_SECONDS,
    )
    try:
        for _ in range(MAX_PAGES):
            if out_of_time(stop_at):
                return found, OUT_OF_TIME
            page = client.page(started=started, cursor=cursor)
            for conversation_id in _unknown(conn, page["conversations"]):
                if out_of_time(stop_at):
                    return found, OUT_OF_TIME
                document = client.conversation(conversation_id)
                with contextlib.suppress(payloads.Rejected):  # no call_sid we can read
                    call_sid = payloads.call_sid_variable(document)
                    if call_sid in wanted:
                        found[call_sid] = document
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor or len(found) == len(wanted):
                return found, None
    except Unavailable as exc:
        return found, f"the conversation list could not be read: {exc.reason}"
    return found, f"over {MAX_PAGES * PAGE_SIZE} conversations started around it"


def _unknown(conn, items: list) -> list[str]:
    """Return the ids of listed conversations that no call of ours has."""
    ids = [
        item["conversation_id"]
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("conversation_id"), str)
        and payloads.storable(item["conversation_id"])
    ]
    known = {row[0] for row in conn.execute(KNOWN, (ids,))}
    return [each for each in ids if each not in known]
