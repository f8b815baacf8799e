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
OUT_OF_TIME = "the run's time ran out"

KNOWN = "SELECT conversation_id FROM calls WHERE conversation_id = ANY(%s)"


def find(
    conn, client, orphans: list[Call], stop_at: float | None = None
) -> tuple[dict, str | None]:
    """Return the orphans' conversations by call_sid, and why absence proves nothing (or None).

    No read starts past ``stop_at`` (``time.monotonic()``), if given.
    """
    wanted, found, cursor = {call.call_sid for call in orphans}, {}, None
    started = (
        int(min(call.created_at for call in orphans).timestamp()) - MARGIN_SECONDS,
        int(max(call.created_at for call in orphans).timestamp()) + MARGIN_SECONDS,
    )
    try:
        for _ in range(MAX_PAGES):
            page = client.page(started=started, cursor=cursor)
            for conversation_id in _unknown(conn, page["conversations"]):
                if stop_at is not None and time.monotonic() >= stop_at:
                    return found, OUT_OF_TIME
                document = client.conversation(conversation_id)
                with contextlib.suppress(payloads.Rejected):  # no call_sid we can read
                    call_sid = payloads.call_sid_variable(document)
                    if call_sid in wanted:
                        found[call_sid] = document
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor or len(found) == len(wanted):
                return found, None
            if stop_at is not None and time.monotonic() >= stop_at:
                return found, OUT_OF_TIME
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
