"""The simulator's scripted call: what is said, what is extracted, and the events it sends.

A conversation is kept as ElevenLabs' ``GET /v1/convai/conversations/{id}``
answers it; the post-call webhook's ``data`` is that same document.
"""

import secrets
import time

from elevenlabs import signature

# (role, what is said) with the driver's name and load put in; the last turn is
# the agent's end_call tool, a turn without a message, as ElevenLabs sends it.
LINES = (
    (
        "agent",
        "Hi {driver_name}, this is dispatch calling about load {load_id}. Where are you now?",
    ),
    ("user", "Just passed exit 42 on I-80, maybe twenty minutes out."),
    ("agent", "Is the load still on schedule?"),
    ("user", "Yes, loaded and on time."),
    ("agent", "Thanks, I'll tell the dock you'll be there around 10:40. Drive safe."),
)
COLLECTED = {
    "eta": ("10:40", "The driver said twenty minutes out."),
    "load_status": ("on_time", "The driver confirmed the load is on schedule."),
    "location": ("I-80 exit 42", "The driver said they just passed exit 42 on I-80."),
}
SUMMARY = "The driver is on I-80 near exit 42, about twenty minutes from the dock; load on time."
AGENT_NUMBER = "+14155550100"
CREDITS_PER_SECOND = 12


def with_new_ids(answer: dict) -> dict:
    """Return an outbound-call answer with a fresh conversation_id and Twilio call SID."""
    return {
        **answer,
        "conversation_id": f"conv_{secrets.token_hex(13)}",
        "callSid": f"CA{secrets.token_hex(16)}",
    }


def conversation(call: dict, conversation_id: str, twilio_sid: str) -> dict:
    """Return a just-placed conversation for an outbound-call body, before anything is said."""
    client_data = call.get("conversation_initiation_client_data") or {}
    return {
        "agent_id": call["agent_id"],
        "conversation_id": conversation_id,
        "status": "initiated",
        "user_id": None,
        "transcript": [],
        "metadata": {
            "start_time_unix_secs": int(time.time()),
            "call_duration_secs": 0,
            "cost": None,
            "termination_reason": None,
            "error": None,
            "batch_call": None,
            "phone_call": {
                "type": "twilio",
                "direction": "outbound",
                "phone_number_id": call["agent_phone_number_id"],
                "agent_number": AGENT_NUMBER,
                "external_number": call["to_number"],
                "call_sid": twilio_sid,
            },
        },
        "analysis": None,
        "conversation_initiation_client_data": {
            "dynamic_variables": dict(client_data.get("dynamic_variables") or {})
        },
    }


def turns(document: dict, call_seconds: float) -> list[dict]:
    """Return the scripted turns, spread over ``call_seconds``, with the end_call turn last."""
    variables = document["conversation_initiation_client_data"]["dynamic_variables"]
    names = {
        "driver_name": variables.get("driver_name", "there"),
        "load_id": variables.get("load_id", "L-77"),
    }
    said = [(role, text.format(**names)) for role, text in LINES] + [("agent", None)]
    step = call_seconds / len(said)
    return [
        {
            "role": role,
            "message": message,
            "tool_calls": None if message else [{"tool_name": "end_call"}],
            "tool_results": None,
            "feedback": None,
            "time_in_call_secs": int(i * step),
            "conversation_turn_metrics": None,
        }
        for i, (role, message) in enumerate(said)
    ]


def summary(document: dict) -> dict:
    """Return a conversation as the list endpoint shows it."""
    return {
        "agent_id": document["agent_id"],
        "conversation_id": document["conversation_id"],
        "status": document["status"],
        "start_time_unix_secs": document["metadata"]["start_time_unix_secs"],
        "call_duration_secs": document["metadata"]["call_duration_secs"],
        "message_count": len(document["transcript"]),
        "call_successful": (document["analysis"] or {}).get("call_successful", "unknown"),
    }


def line_webhook(document: dict, turn: dict) -> dict:
    """Return the per-line transcription webhook body for one turn."""
    variables = document["conversation_initiation_client_data"]["dynamic_variables"]
    start = document["metadata"]["start_time_unix_secs"]
    return {
        "call_sid": variables.get("call_sid"),
        "speaker": turn["role"],
        "message": turn["message"],
        # Unix seconds as a string of digits, as the webhook template sends them.
        "timestamp": str(start + turn["time_in_call_secs"]),
    }


def finish(document: dict, duration: int) -> None:
    """Close an answered conversation: duration, cost, termination reason, analysis."""
    document["status"] = "done"
    document["metadata"].update(
        call_duration_secs=duration,
        cost=duration * CREDITS_PER_SECOND,
        termination_reason="end_call tool was called.",
    )
    document["analysis"] = {
        "evaluation_criteria_results": {},
        "data_collection_results": {
            name: {"data_collection_id": name, "value": value, "rationale": why}
            for name, (value, why) in COLLECTED.items()
        },
        "call_successful": "success",
        "transcript_summary": SUMMARY,
    }


def post_call_transcription(document: dict) -> dict:
    """Return the ``post_call_transcription`` envelope of a finished conversation."""
    return {
        "type": "post_call_transcription",
        "event_timestamp": int(time.time()),
        "data": document,
    }


def fail(document: dict, reason: str) -> dict:
    """Close a conversation that never connected; return its ``call_initiation_failure``."""
    document["status"] = "failed"
    document["metadata"]["termination_reason"] = f"Call {reason}"
    phone_call = document["metadata"]["phone_call"]
    return {
        "type": "call_initiation_failure",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": document["agent_id"],
            "conversation_id": document["conversation_id"],
            "failure_reason": reason,
            "metadata": {  # Twilio's status callback, passed on
                "type": "twilio",
                "body": {
                    "CallSid": phone_call["call_sid"],
                    "CallStatus": reason,
                    "To": phone_call["external_number"],
                    "Direction": "outbound-api",
                },
            },
            "conversation_initiation_client_data": document["conversation_initiation_client_data"],
        },
    }


def signed_headers(secret: str, body: bytes) -> dict:
    """Return the headers ElevenLabs sends with a webhook body, signed when there is a secret."""
    headers = {"Content-Type": "application/json"}
    if secret:
        timestamp = str(int(time.time()))
        digest = signature.expected_digest(secret, timestamp, body)
        headers[signature.HEADER] = f"t={timestamp},v0={digest}"
    return headers
