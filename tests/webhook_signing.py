"""What the webhook tests share: requests signed as ElevenLabs signs them, its events, replay.

Written from the documented scheme, independently of the app's verifier, so a
mistake in one is not hidden by the same mistake in the other. ``sdk_construct_event``
restates the verification of ElevenLabs' official Python SDK
(``WebhooksClient.construct_event`` in elevenlabs-python), step for step.
"""

import hashlib
import hmac
import json
import time
from pathlib import Path

from commands import run_module
from credentials import WEBHOOK_SECRET

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "elevenlabs"
TRANSCRIPTION = "/webhooks/elevenlabs/transcription"
POST_CALL = "/webhooks/elevenlabs/post-call"


def signature_header(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp=None) -> str:
    """Return ``t=<unix>,v0=<hex HMAC-SHA256 of "<t>.<body>">``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256)
    return f"t={t},v0={digest.hexdigest()}"


def body_of(payload) -> bytes:
    """Return the bytes ElevenLabs would send for a JSON payload."""
    return json.dumps(payload).encode()


def post_signed(client, path, payload=None, *, body=None, secret=WEBHOOK_SECRET, timestamp=None):
    """POST a payload (or raw bytes) with a valid signature; return the response."""
    body = body_of(payload) if body is None else body
    header = signature_header(body, secret=secret, timestamp=timestamp)
    return client.post(
        path,
        data=body,
        headers={"ElevenLabs-Signature": header, "Content-Type": "application/json"},
    )


def post_with_header(client, path, body: bytes, header):
    """POST raw bytes with the given signature header (None: no header)."""
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["ElevenLabs-Signature"] = header
    return client.post(path, data=body, headers=headers)


def sdk_construct_event(raw_body: str, sig_header: str, secret: str) -> dict:
    """Verify as ElevenLabs' SDK ``construct_event`` does; return the event or raise ValueError.

    Its steps: split the header on commas; ``t=`` gives the timestamp and
    ``v0=`` (kept with its prefix) the signature; refuse a timestamp older than
    30 minutes; HMAC-SHA256 the UTF-8 of ``f"{timestamp}.{raw_body}"`` with the
    secret; compare ``"v0=" + hexdigest`` to the signature; parse the body as JSON.
    """
    if not sig_header:
        raise ValueError("Missing signature header")
    if not secret:
        raise ValueError("Webhook secret not configured")
    timestamp = signature = None
    for part in sig_header.split(","):
        if part.startswith("t="):
            timestamp = part[2:]
        elif part.startswith("v0="):
            signature = part
    if not timestamp or not signature:
        raise ValueError("No signature hash found with expected scheme v0")
    if int(timestamp) * 1000 < int(time.time() * 1000) - 30 * 60 * 1000:
        raise ValueError("Timestamp outside the tolerance zone")
    message = f"{timestamp}.{raw_body}"
    digest = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    if signature != "v0=" + digest.hexdigest():
        raise ValueError("Signature hash does not match the expected signature hash for payload")
    return json.loads(raw_body)


def fixture(name: str, call_sid: str | None = None) -> dict:
    """Return a shared ElevenLabs fixture, with our call_sid put where it is marked."""
    text = (FIXTURES / name).read_text()
    if call_sid is not None:
        text = text.replace("<our call_sid>", call_sid)
    return json.loads(text)


def make_call(
    conn,
    conversation_id: str | None = "conv_webhook_1",
    *,
    driver_id: int = 7,
    twilio_call_sid: str | None = None,
):
    """Create a call as call creation does; given a conversation_id, as ElevenLabs answered."""
    from models import calls

    call = calls.create(conn, driver_id=driver_id, phone_number="+14155550123", driver_name="Dana")
    if conversation_id is None:
        return call
    return calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id=conversation_id,
        twilio_call_sid=twilio_call_sid,
        api_called_at=call.created_at,
    )


def deliveries(conn) -> list[dict]:
    """Return the delivery log, oldest first, as dicts."""
    cur = conn.execute("SELECT * FROM webhook_deliveries ORDER BY id")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def lines(conn, conversation_id: str) -> list[tuple]:
    """Return the stored lines of a conversation as (speaker, message, timestamp), in time order."""
    return conn.execute(
        'SELECT speaker, message, "timestamp" FROM transcriptions '
        'WHERE conversation_id = %s ORDER BY "timestamp", id',
        (conversation_id,),
    ).fetchall()


def transcription_event(call_sid: str | None, conversation_id="conv_post_call") -> dict:
    """Return the post_call_transcription fixture for our call."""
    event = fixture("post_call_transcription.json", call_sid or "")
    if call_sid is None:
        del event["data"]["conversation_initiation_client_data"]["dynamic_variables"]["call_sid"]
    event["data"]["conversation_id"] = conversation_id
    return event


def failure_event(conversation_id="conv_post_call", reason="no-answer") -> dict:
    """Return the call_initiation_failure fixture for a conversation."""
    event = fixture("call_initiation_failure.json")
    event["data"]["conversation_id"] = conversation_id
    event["data"]["failure_reason"] = reason
    return event


SINCE = "2000-01-01T00:00Z"


def replay(database_url, *args, env_url=False):
    """Run the replay command as the operator does; return the finished process."""
    if env_url:
        return run_module("ops", "replay", *args, database_url=database_url)
    return run_module("ops", "replay", *args, "--database-url", database_url, database_url=None)


def service_backend_waiting_on_a_lock(conn, timeout: float = 10.0) -> int:
    """Return the pid of the service's connection that waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'call-sid-service' AND wait_event_type = 'Lock'"
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.02)
    raise AssertionError("no service connection waits on a lock")
