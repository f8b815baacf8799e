"""What the console's tests share: signing in, seeding calls and deliveries, reading pages."""

import base64

from credentials import API_TOKEN

from models import calls, outcomes

AUTH = {"Authorization": "Basic " + base64.b64encode(f"ops:{API_TOKEN}".encode()).decode()}


def make_searchable_call(conn, phone="+14155550123", *, driver_id=42, name="Dana", created=None):
    """Create a call as the API does, optionally as if created at another time."""
    call = calls.create(conn, driver_id=driver_id, phone_number=phone, driver_name=name)
    if created is not None:
        conn.execute("UPDATE calls SET created_at = %s WHERE id = %s", (created, call.id))
    return call


def complete(conn, call, verdict="success", answers=None, seconds=76):
    """End a call as its post-call webhook does, with what ElevenLabs made of it."""
    calls.mark_completed(
        conn,
        call.call_sid,
        call_duration_secs=seconds,
        termination_reason="end",
        twilio_call_sid=None,
    )
    outcome = outcomes.Outcome(
        call_successful=verdict, data_collection=answers, summary="On I-80.", cost_credits=212
    )
    outcomes.save(conn, call.id, outcome)


ANSWERS = {"eta": "10:40", "load_status": "loaded", "location": None}


def add_delivery(conn, *, call_sid=None, conversation_id=None, outcome, status, reason=None):
    """Log a webhook delivery as the webhook endpoints do."""
    conn.execute(
        "INSERT INTO webhook_deliveries (endpoint, signature_valid, body, body_size, call_sid, "
        "conversation_id, outcome, reason, http_status) "
        "VALUES ('transcription', true, %s, 2, %s, %s, %s, %s, %s)",
        (b"{}", call_sid, conversation_id, outcome, reason, status),
    )


def rows(response) -> list[str]:
    """Return the call_sids listed on a page, in order."""
    html = response.get_data(as_text=True)
    return [part.split('"', 1)[0] for part in html.split('data-call-sid="')[1:]]


def plan(conn, query, params) -> str:
    """Return PostgreSQL's plan for a query, with sequential scans priced out."""
    conn.execute("SET enable_seqscan = off")  # tiny test tables would be scanned otherwise
    return "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, params).fetchall())


def answer_late(conn, call) -> None:
    """Give ``call`` the conversation_id ElevenLabs' answer brings, after its first line came."""
    calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id="conv_replayed",
        twilio_call_sid=None,
        api_called_at=call.created_at,
    )
