"""``python -m ops reconcile`` when ElevenLabs' conversation list cannot be read whole.

A call without conversation_id is looked for in the list by its call_sid. Not
finding it proves it was never placed only when the whole list was read: when
the list fails, or is longer than reconcile reads, the call may be ringing, so
it is left for the next run and said so, never failed "never placed".
"""

import pytest
import requests
from commands import run_module
from gunicorn_server import wait_for

from elevenlabs.simulator import script
from models import calls
from ops import orphan_calls

ORDER = {
    "agent_id": "agent_7f3c2d1e9b8a",
    "agent_phone_number_id": "phnum_5b2a9c0d",
    "to_number": "+14155550133",
}


@pytest.fixture
def reconcile_cli(monkeypatch, simulator, database_url):
    """Return ``run(*args)``: the command as an operator runs it, ElevenLabs being the simulator."""
    monkeypatch.setenv("ELEVENLABS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi_test_key")

    def run(*args):
        return run_module("ops", "reconcile", *args, database_url=database_url)

    return run


@pytest.mark.parametrize("status", [429, 500])
def test_call_that_may_have_been_placed_is_left_when_the_conversation_list_fails(
    simulator, conn, reconcile_cli, status
):
    # A process that crashed after dialling: the call row has no conversation_id.
    call = calls.create(conn, driver_id=42, phone_number=ORDER["to_number"], driver_name="Dana")
    variables = {"call_sid": call.call_sid}
    order = {**ORDER, "conversation_initiation_client_data": {"dynamic_variables": variables}}
    url = f"{simulator.base_url}/v1/convai/twilio/outbound-call"
    conversation_id = requests.post(url, json=order, timeout=10).json()["conversation_id"]
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")
    simulator.list_fault = status

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 1
    assert (
        f"{call.call_sid}: no conversation found yet (the conversation list could not be read: "
        f"ElevenLabs answered HTTP {status}" in result.stdout
    )
    assert "1 left for the next run" in result.stdout.splitlines()[-1]
    left = calls.by_call_sid(conn, call.call_sid)
    assert (left.status, left.failure_reason) == ("initiating", None)
    simulator.list_fault = None
    assert reconcile_cli("--older-than", "0").returncode == 0  # the next run finds it
    settled = calls.by_call_sid(conn, call.call_sid)
    assert (settled.status, settled.conversation_id) == ("completed", conversation_id)


def test_call_not_in_the_pages_read_is_left_when_the_list_is_longer_than_reconcile_reads(
    simulator, conn, reconcile_cli
):
    call = calls.create(conn, driver_id=42, phone_number=ORDER["to_number"], driver_name="Dana")
    # One conversation more than reconcile reads, all started around the call, all ours
    # already (so none is fetched): the call's own could be on a page not read.
    beyond = orphan_calls.MAX_PAGES * orphan_calls.PAGE_SIZE + 1
    ids = [f"conv_other_{i}" for i in range(beyond)]
    for conversation_id in ids:
        simulator.conversations[conversation_id] = script.conversation(
            ORDER, conversation_id, "CA0"
        )
    conn.execute(
        "INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id) "
        "SELECT 'cs_other_' || i, 1, '+14155550199', 'completed', c "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t(c, i)",
        (ids,),
    )
    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 1
    assert (
        f"{call.call_sid}: no conversation found yet (over "
        f"{orphan_calls.MAX_PAGES * orphan_calls.PAGE_SIZE} conversations started around it)"
        in result.stdout
    )
    left = calls.by_call_sid(conn, call.call_sid)
    assert (left.status, left.failure_reason) == ("initiating", None)
