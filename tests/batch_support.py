"""What the batch tests share: a dispatch worker in this process, and ending its calls.

Calls are ended the way ElevenLabs ends them: a signed post-call webhook to the
service's own endpoint, so the entries follow the same path as in production.
"""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from webhook_signing import POST_CALL, failure_event, post_signed, transcription_event

import db
from dispatch.rounds import Worker
from dispatch.settings import DispatchSettings
from dispatch.windows import Window
from elevenlabs.client import ElevenLabsClient

# Noon in Chicago on an ordinary day after every batch's creation: default windows are open.
NOON_CHICAGO = datetime(2027, 6, 10, 17, 0, tzinfo=UTC)


def dispatch_settings(cap: int = 5) -> DispatchSettings:
    """Return settings with this cap, Chicago as the default zone, 08:00-20:00."""
    return DispatchSettings(
        max_concurrent_calls=cap,
        call_max_minutes=15,
        calling_timezone=ZoneInfo("America/Chicago"),
        calling_window=Window(time(8), time(20)),
    )


def workers(database_url, app_config, elevenlabs):
    """Yield ``make(cap=5)``: dispatch workers of this process against the simulator."""
    pools = []

    def make(cap: int = 5) -> Worker:
        pool = db.open_pool(database_url, min_size=1, max_size=10, timeout=5)
        pools.append(pool)
        client = ElevenLabsClient(
            elevenlabs.base_url, "xi_test_key", connect_timeout=2, read_timeout=10
        )
        return Worker(pool, client, dispatch_settings(cap), app_config)

    yield make
    for pool in pools:
        pool.close()


def batch_body(numbers, **extra) -> dict:
    """Return a batch request calling each number (driver ids 1, 2, …)."""
    calls = [
        {"driver_id": i, "phone_number": number, "timezone": "America/Chicago"}
        for i, number in enumerate(numbers, start=1)
    ]
    return {"name": "morning check-in", "calls": calls, **extra}


def numbers(count: int, last_digit: int = 0) -> list[str]:
    """Return ``count`` distinct E.164 numbers ending in ``last_digit``."""
    return [f"+1415555{i:03d}{last_digit}" for i in range(count)]


def end_call(client, conn, call_sid: str, how: str = "answered") -> None:
    """End a call as ElevenLabs would: the post-call transcript, or a busy/no-answer failure."""
    conversation_id = conn.execute(
        "SELECT conversation_id FROM calls WHERE call_sid = %s", (call_sid,)
    ).fetchone()[0]
    if how == "answered":
        event = transcription_event(call_sid, conversation_id)
    else:
        event = failure_event(conversation_id, reason=how)
    response = post_signed(client, POST_CALL, event)
    assert response.status_code == 200, response.get_json()


def entry_states(conn) -> dict[str, str]:
    """Return each entry's state by phone number."""
    return dict(conn.execute("SELECT phone_number, state FROM call_batch_entries").fetchall())


def dials_per_number(elevenlabs) -> dict[str, int]:
    """Return how many outbound-call requests ElevenLabs received per number."""
    counts: dict[str, int] = {}
    for received in elevenlabs.received:
        number = received.body["to_number"]
        counts[number] = counts.get(number, 0) + 1
    return counts
