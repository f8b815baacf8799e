"""``python -m ops reconcile``: calls no webhook ended are settled from ElevenLabs' conversations.

Against the simulator (conftest's ``service``): a number ending in 3 is answered
and talked through, and no webhook comes; only the conversation endpoint knows.
"""

import dataclasses
import json
from types import SimpleNamespace

import pytest
import requests
from batch_support import dispatch_settings
from commands import run_module
from credentials import WEBHOOK_SECRET
from gunicorn_server import wait_for
from simulated_calls import SPOKEN_LINES, call_when, get, place
from webhook_signing import make_call

import db
from dispatch import tasks
from dispatch.rounds import Worker
from elevenlabs.client import ElevenLabsClient
from elevenlabs.conversations import Conversations
from elevenlabs.simulator import script
from models import calls, outcomes
from ops import reconcile


@pytest.fixture
def reconcile_cli(monkeypatch, simulator, database_url):
    """Return ``run(*args)``: the command as an operator runs it, ElevenLabs being the simulator."""
    monkeypatch.setenv("ELEVENLABS_BASE_URL", simulator.base_url)
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi_test_key")
    monkeypatch.delenv("ELEVENLABS_USD_PER_CREDIT", raising=False)

    def run(*args):
        return run_module("ops", "reconcile", *args, database_url=database_url)

    return run


def conversations_of(simulator) -> Conversations:
    """Return the reader the command builds, pointed at the simulator."""
    return Conversations.from_config(
        {
            "ELEVENLABS_BASE_URL": simulator.base_url,
            "ELEVENLABS_API_KEY": "xi_test_key",
            "ELEVENLABS_CONNECT_TIMEOUT": 2.0,
            "ELEVENLABS_READ_TIMEOUT": 5.0,
        }
    )


def silent_call(service, simulator) -> dict:
    """Place a call that is answered and ends with no webhook; return the service's answer."""
    created = place(service, "+14155550123")
    assert created.status_code == 201
    conversation_id = created.json()["conversation_id"]
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")
    return created.json()


def crashed_call(conn, simulator, number: str):
    """Write a call row, dial it at ElevenLabs and record nothing more, as a crashed process."""
    call = calls.create(conn, driver_id=42, phone_number=number, driver_name="Dana")
    order = {
        "agent_id": "agent_7f3c2d1e9b8a",
        "agent_phone_number_id": "phnum_5b2a9c0d",
        "to_number": number,
        "conversation_initiation_client_data": {"dynamic_variables": {"call_sid": call.call_sid}},
    }
    url = f"{simulator.base_url}/v1/convai/twilio/outbound-call"
    return call, requests.post(url, json=order, timeout=10).json()["conversation_id"]


def test_call_with_no_webhook_is_completed_by_reconcile_with_transcript_and_outcome(
    service, simulator, conn, reconcile_cli
):
    call_sid = silent_call(service, simulator)["call_sid"]
    assert get(f"{service}/driver_data/calls/{call_sid}")["status"] == "initiated"

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stderr
    assert f"{call_sid}: conversation" in result.stdout
    assert "is done: completed (5 new lines; outcome recorded" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("reconcile: changed 1 of the calls open")
    call = get(f"{service}/driver_data/calls/{call_sid}")
    assert call["status"] == "completed"
    assert call["termination_reason"] == "end_call tool was called."
    assert len(call["transcript"]) == SPOKEN_LINES
    outcome = outcomes.of_call(conn, calls.by_call_sid(conn, call_sid).id)
    assert outcome.call_successful == "success"
    assert outcome.data_collection == {
        "eta": "10:40",
        "load_status": "on_time",
        "location": "I-80 exit 42",
    }
    assert outcome.cost_credits > 0
    assert outcome.cost_usd is None  # no price per credit set: unknown, not 0


def test_post_call_webhook_arriving_after_reconcile_is_a_duplicate(
    service, simulator, reconcile_cli
):
    created = silent_call(service, simulator)
    assert reconcile_cli("--older-than", "0").returncode == 0

    document = simulator.conversations[created["conversation_id"]]
    body = json.dumps(script.post_call_transcription(document)).encode()
    late = requests.post(
        f"{service}/webhooks/elevenlabs/post-call",
        data=body,
        headers=script.signed_headers(WEBHOOK_SECRET, body),
        timeout=10,
    )

    assert late.status_code == 200
    assert late.json()["status"] == "duplicate"


def test_second_reconcile_changes_nothing(service, simulator, reconcile_cli):
    silent_call(service, simulator)
    assert reconcile_cli("--older-than", "0").returncode == 0

    again = reconcile_cli("--older-than", "0")

    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        "reconcile: changed 0 of the calls open for more than 0 minutes (none open)"
    ]


def test_conversation_its_webhook_settled_meanwhile_is_left_unchanged(service, simulator, conn):
    """The reverse order: the webhook wins the race after reconcile read the open calls."""
    created = place(service, "+14155550120")
    call_sid = created.json()["call_sid"]
    read_before = calls.by_call_sid(conn, call_sid)
    call_when(service, call_sid, lambda c: c["status"] == "completed", "the webhook's completion")
    document = simulator.conversations[created.json()["conversation_id"]]
    said = []
    run = reconcile.Run(conn, conversations_of(simulator), False, None, said.append)

    assert reconcile.settle(run, read_before, document) == reconcile.UNCHANGED
    assert "unchanged (duplicate" in said[0]


def test_crashed_initiating_call_is_matched_by_call_sid_through_the_list(
    service, simulator, conn, reconcile_cli
):
    place(service, "+14155550120")  # another conversation in the list, known to us
    call, conversation_id = crashed_call(conn, simulator, "+14155550133")
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stderr
    assert f"{call.call_sid}: conversation {conversation_id} is done: completed" in result.stdout
    settled = calls.by_call_sid(conn, call.call_sid)
    assert (settled.status, settled.conversation_id) == ("completed", conversation_id)
    call_json = get(f"{service}/driver_data/calls/{call.call_sid}")
    assert len(call_json["transcript"]) == SPOKEN_LINES


def test_initiating_call_elevenlabs_never_heard_of_fails_as_never_placed(
    simulator, conn, reconcile_cli
):
    call = calls.create(conn, driver_id=42, phone_number="+14155550120", driver_name="Dana")

    assert reconcile_cli("--older-than", "5").stdout.endswith("(none open)\n")  # too young yet
    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stderr
    assert f"{call.call_sid}: no conversation at ElevenLabs names it: failed" in result.stdout
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.failure_reason) == ("failed", "never placed")


def test_call_elevenlabs_accepted_without_a_conversation_id_is_never_failed_as_never_placed(
    simulator, conn, reconcile_cli
):
    call = make_call(conn, conversation_id=None)
    # ElevenLabs answered success with a null conversation_id: the call is initiated.
    calls.mark_initiated(
        conn, call.call_sid, conversation_id=None, twilio_call_sid=None, api_called_at=None
    )

    result = reconcile_cli("--older-than", "0")

    assert f"{call.call_sid}: accepted without a conversation_id, none found yet" in result.stdout
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


@pytest.mark.parametrize("status", [429, 500])
def test_elevenlabs_429_or_5xx_during_reconcile_leaves_the_call_untouched_and_says_so(
    service, simulator, conn, reconcile_cli, status
):
    created = silent_call(service, simulator)
    simulator.conversation_faults[created["conversation_id"]] = status

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 1
    assert f"{created['call_sid']}: left for the next run" in result.stdout
    assert f"ElevenLabs answered HTTP {status}" in result.stdout
    assert "1 left for the next run" in result.stdout.splitlines()[-1]
    call = get(f"{service}/driver_data/calls/{created['call_sid']}")
    assert (call["status"], call["transcript"]) == ("initiated", [])
    del simulator.conversation_faults[created["conversation_id"]]
    assert reconcile_cli("--older-than", "0").returncode == 0  # the next run settles it


def test_conversation_still_under_way_is_left_alone_and_reported(service, simulator, reconcile_cli):
    simulator.call_seconds = 60
    created = place(service, "+14155550123").json()

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stderr
    assert f"{created['call_sid']}: conversation" in result.stdout
    assert "still under way at ElevenLabs; left alone" in result.stdout
    assert get(f"{service}/driver_data/calls/{created['call_sid']}")["status"] == "initiated"


def test_failed_conversation_with_no_webhook_fails_the_call_with_its_reason(
    service, simulator, reconcile_cli
):
    created = place(service, "+14155550121").json()  # busy
    simulator.webhook_url = ""  # its failure webhook is never sent
    conversation_id = created["conversation_id"]
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "failed", "the failure")

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stderr
    assert "is failed: failed" in result.stdout
    call = get(f"{service}/driver_data/calls/{created['call_sid']}")
    assert (call["status"], call["failure_reason"]) == ("failed", "busy")


def test_dry_run_says_what_would_change_and_changes_nothing(
    service, simulator, conn, reconcile_cli
):
    created = silent_call(service, simulator)
    orphan = calls.create(conn, driver_id=43, phone_number="+14155550120")

    result = reconcile_cli("--older-than", "0", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "would be completed (dry run)" in result.stdout
    assert "would be failed, never placed (dry run)" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("dry run: nothing changed")
    assert calls.by_call_sid(conn, created["call_sid"]).status == "initiated"
    assert calls.by_call_sid(conn, orphan.call_sid).status == "initiating"


def test_reconcile_without_an_api_key_is_one_line_and_exit_1(reconcile_cli, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "")

    result = reconcile_cli()

    assert result.returncode == 1
    assert result.stderr == "error: ELEVENLABS_API_KEY is not set: reconciling asks ElevenLabs\n"


def test_worker_reconcile_task_settles_calls_open_past_call_max_minutes(
    service, simulator, conn, database_url, app_config
):
    created = silent_call(service, simulator)
    pool = db.open_pool(database_url, min_size=1, max_size=2, timeout=5)
    client = ElevenLabsClient(simulator.base_url, "xi_test_key", connect_timeout=2, read_timeout=5)
    settings = dataclasses.replace(dispatch_settings(), call_max_minutes=0)
    service_config = {**app_config, "ELEVENLABS_BASE_URL": simulator.base_url}
    tasks.use(Worker(pool, client, settings, service_config))
    try:
        tasks.reconcile(timestamp=0)
    finally:
        tasks.use(None)
        pool.close()

    assert calls.by_call_sid(conn, created["call_sid"]).status == "completed"


def test_conversation_elevenlabs_does_not_know_404_leaves_the_call_and_says_so(
    simulator, conn, reconcile_cli
):
    call = make_call(conn, conversation_id="conv_elevenlabs_never_had")

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 1
    assert f"{call.call_sid}: left for the next run" in result.stdout
    assert "ElevenLabs answered HTTP 404" in result.stdout
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_run_past_its_time_budget_asks_nothing_more_and_says_the_next_run_goes_on(simulator, conn):
    call = make_call(conn, conversation_id="conv_not_asked_about")
    said = []

    counts = reconcile.reconcile(
        conn, conversations_of(simulator), 0, out=said.append, budget_seconds=0
    )

    assert not any(seen.path.endswith("conv_not_asked_about") for seen in simulator.received)
    assert said[-1].endswith("(none looked at); 0 s spent: the next run goes on")
    assert sum(counts.values()) == 0
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_orphan_a_run_has_no_time_for_is_said_left_and_the_rotation_stays_before_it(
    simulator, conn
):
    orphan = calls.create(conn, driver_id=42, phone_number="+14155550120", driver_name="Dana")
    later = make_call(conn, conversation_id="conv_not_asked_about")
    rotation, said = reconcile.Rotation(), []

    counts = reconcile.reconcile(
        conn, conversations_of(simulator), 0, out=said.append, budget_seconds=0, rotation=rotation
    )

    assert f"{orphan.call_sid}: no conversation found yet (the run's time ran out)" in said[0]
    assert counts[reconcile.LEFT] == 1
    assert rotation.after is None  # the next run starts from the orphan again
    assert [calls.by_call_sid(conn, c.call_sid).status for c in (orphan, later)] == [
        "initiating",
        "initiated",
    ]


def conversation_of(simulator, call, conversation_id: str) -> dict:
    """Put a conversation naming ``call`` in the simulator; return its document."""
    body = {
        "agent_id": "agent_7f3c2d1e9b8a",
        "agent_phone_number_id": "phnum_5b2a9c0d",
        "to_number": call.phone_number,
        "conversation_initiation_client_data": {"dynamic_variables": {"call_sid": call.call_sid}},
    }
    document = script.conversation(body, conversation_id, "CA" + conversation_id)
    simulator.conversations[conversation_id] = document
    return document


def opened_ago(conn, call, interval: str) -> None:
    """Move the call's creation back by ``interval`` (a PostgreSQL interval)."""
    conn.execute(
        "UPDATE calls SET created_at = now() - %s::interval WHERE call_sid = %s",
        (interval, call.call_sid),
    )


def test_call_elevenlabs_answers_404_for_even_a_day_after_is_left_and_said_every_run(
    simulator, conn, reconcile_cli
):
    call = make_call(conn, conversation_id="conv_deleted_by_retention")
    opened_ago(conn, call, "25 hours")

    for _ in range(2):
        result = reconcile_cli("--older-than", "0")
        assert result.returncode == 1, result.stdout
        said = f"{call.call_sid}: left for the next run: conversation conv_deleted_by_retention"
        assert said in result.stdout
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"


def test_call_elevenlabs_still_calls_in_progress_a_day_after_is_failed_saying_so(
    simulator, conn, reconcile_cli
):
    call = make_call(conn, conversation_id="conv_never_ends")
    conversation_of(simulator, call, "conv_never_ends")["status"] = "in-progress"
    opened_ago(conn, call, "25 hours")

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stdout
    reason = "still in-progress at ElevenLabs after 24 h"
    assert f"{call.call_sid}: conversation conv_never_ends is in-progress: failed, {reason}" in (
        result.stdout
    )
    failed = calls.by_call_sid(conn, call.call_sid)
    assert (failed.status, failed.failure_reason) == ("failed", reason)


def test_500_calls_reconcile_cannot_settle_do_not_keep_a_newer_call_open(
    simulator, conn, database_url, app_config
):
    # Unknown at ElevenLabs (404), but younger than a day: left, run after run.
    conn.execute(
        """
        INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id, created_at)
        SELECT 'cs_gone_' || i, i, '+1415555' || lpad(i::text, 4, '0'), 'initiated',
               'conv_gone_' || i, now() - interval '2 hours' + make_interval(secs => i)
          FROM generate_series(1, 500) AS i
        """
    )
    fresh = make_call(conn, conversation_id="conv_fresh_done")
    script.finish(conversation_of(simulator, fresh, "conv_fresh_done"), 30)
    opened_ago(conn, fresh, "20 minutes")
    pool = db.open_pool(database_url, min_size=1, max_size=2, timeout=5)
    client = ElevenLabsClient(simulator.base_url, "xi_test_key", connect_timeout=2, read_timeout=5)
    service_config = {**app_config, "ELEVENLABS_BASE_URL": simulator.base_url}
    tasks.use(Worker(pool, client, dispatch_settings(), service_config))
    try:
        for _ in range(2):  # 501 open calls, 500 a run: the second run reaches the last
            tasks.reconcile(timestamp=0)
    finally:
        tasks.use(None)
        pool.close()

    assert calls.by_call_sid(conn, fresh.call_sid).status == "completed"
    still_open = "SELECT count(*) FROM calls WHERE status = 'initiated'"
    assert conn.execute(still_open).fetchone()[0] == 500


def test_old_orphan_is_found_never_placed_though_1000_conversations_started_since(
    simulator, conn, reconcile_cli
):
    old = calls.create(conn, driver_id=41, phone_number="+14155550120", driver_name="Dana")
    opened_ago(conn, old, "3 hours")
    for i in range(1001):  # a busy afternoon between the two orphans, others' calls
        other = SimpleNamespace(call_sid=f"cs_other_{i}", phone_number="+14155550199")
        started = conversation_of(simulator, other, f"conv_other_{i}")["metadata"]
        started["start_time_unix_secs"] -= 90 * 60
    new, conversation_id = crashed_call(conn, simulator, "+14155550133")
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")

    result = reconcile_cli("--older-than", "0")

    assert result.returncode == 0, result.stdout
    assert f"{old.call_sid}: no conversation at ElevenLabs names it: failed" in result.stdout
    assert calls.by_call_sid(conn, old.call_sid).failure_reason == "never placed"
    assert calls.by_call_sid(conn, new.call_sid).status == "completed"
