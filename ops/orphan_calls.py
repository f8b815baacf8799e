"""Calls without a conversation_id, looked for at ElevenLabs by the call_sid we passed it.

Its conversation, if any, started within minutes of the row: only that window of
the list is read, a bounded number of pages, and each conversation no call of
ours has is fetched for its dynamic variables (the list's items carry none).
"""

from dataclasses import dataclass

from elevenlabs import payloads
from elevenlabs.conversations import PAGE_SIZE, Unavailable
from models.calls import Call

MARGIN_SECONDS = 15 * 60  # clocks apart, and the ringing before a conversation starts
MAX_PAGES = 10

KNOWN = "SELECT conversation_id FROM calls WHERE conversation_id = ANY(%s)"


@dataclass(frozen=True)
class Search:
    """The conversations found by call_sid; ``incomplete`` says why absence proves nothing."""

    found: dict  # call_sid → the conversation's details
    incomplete: str | None


def find(conn, client, orphans: list[Call]) -> Search:
    """Look for the orphans' conversations in the list of those started around their creation."""
    wanted, found, cursor = {call.call_sid for call in orphans}, {}, None
    started = (
        int(min(call.created_at for call in orphans).timestamp()) - MARGIN_SECONDS,
        int(max(call.created_at for call in orphans).timestamp()) + MARGIN_SECONDS,
    )
    try:
        for _ in range(MAX_PAGES):
            page = client.page(started=started, cursor=cursor)
            for conversation_id in _unknown(conn, page["conversations"]):
                document = client.conversation(conversation_id)
                if _call_sid(document) in wanted:
                    found[_call_sid(document)] = document
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor or len(found) == len(wanted):
                return Search(found, None)
    except Unavailable as exc:
        return Search(found, f"the conversation list could not be read: {exc.reason}")
    return Search(found, f"over {MAX_PAGES * PAGE_SIZE} conversations started around it")


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


def _call_sid(document: dict) -> str | None:
    """Return the call_sid dynamic variable of a conversation's details, if readable."""
    try:
        return payloads.call_sid_variable(document)
    except payloads.Rejected:
        return None
