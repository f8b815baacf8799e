"""The ElevenLabs simulator alone: ElevenLabs' shapes, its state, its webhooks, its command."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from gunicorn_server import ROOT, free_port, wait_for
from webhook_signing import sdk_construct_event

from elevenlabs.simulator import OUTBOUND_CALL_PATH, Simulator

SECRET = "wsec_simulator_test"
CALL = {
    "agent_id": "agent_1",
    "agent_phone_number_id": "phnum_1",
    "to_number": "+14155550120",
    "conversation_initiation_client_data": {
        "dynamic_variables": {"call_sid": "cs_0123", "driver_name": "Dana"}
    },
}


@pytest.fixture
def simulator():
    sim = Simulator(api_key="xi_key", call_seconds=0.5, webhook_secret=SECRET).start()
    yield sim
    sim.close()


def call(sim, path, body=None, *, key="xi_key", method="POST"):
    return requests.request(
        method, sim.base_url + path, json=body, headers={"xi-api-key": key}, timeout=10
    )


def test_outbound_call_without_its_fields_returns_422_with_each_field_named(simulator):
    answer = call(simulator, OUTBOUND_CALL_PATH, {"to_number": 14155550120})

    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"type": "missing", "loc": ["body", "agent_id"], "msg": "Field required", "input": None},
        {
            "type": "missing",
            "loc": ["body", "agent_phone_number_id"],
            "msg": "Field required",
            "input": None,
        },
        {
            "type": "string_type",
            "loc": ["body", "to_number"],
            "msg": "Input should be a valid string",
            "input": 14155550120,
        },
    ]
    assert simulator.conversations == {}


def test_outbound_call_with_a_reserved_dynamic_variable_returns_422(simulator):
    variables = {"system__time": "now", "ok": 1}
    body = {**CALL, "conversation_initiation_client_data": {"dynamic_variables": variables}}

    answer = call(simulator, OUTBOUND_CALL_PATH, body)

    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"][-2:] == ["dynamic_variables", "system__time"]


def test_a_wrong_api_key_returns_401_invalid_api_key(simulator):
    answer = call(simulator, OUTBOUND_CALL_PATH, CALL, key="xi_wrong")

    assert answer.status_code == 401
    assert answer.json() == {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    assert call(simulator, "/v1/convai/conversations", method="GET", key="").status_code == 401
    assert simulator.conversations == {}


def test_a_placed_call_comes_back_from_the_conversation_endpoint(simulator):
    placed = call(simulator, OUTBOUND_CALL_PATH, CALL).json()

    assert placed["success"] is True
    assert placed["callSid"].startswith("CA")
    path = f"/v1/convai/conversations/{placed['conversation_id']}"
    wait_for(lambda: call(simulator, path, method="GET").json()["status"] == "done", "the end")
    document = call(simulator, path, method="GET").json()
    assert document["agent_id"] == "agent_1"
    assert document["metadata"]["phone_call"]["call_sid"] == placed["callSid"]
    assert document["metadata"]["phone_call"]["external_number"] == "+14155550120"
    assert document["analysis"]["call_successful"] == "success"
    assert document["conversation_initiation_client_data"]["dynamic_variables"]["call_sid"] == (
        "cs_0123"
    )


def test_an_unknown_conversation_returns_404(simulator):
    answer = call(simulator, "/v1/convai/conversations/conv_nope", method="GET")

    assert answer.status_code == 404
    assert answer.json()["detail"]["status"] == "conversation_not_found"


def test_the_list_pages_newest_first_and_filters_by_agent_and_start(simulator):
    ids = []
    for agent in ("agent_1", "agent_1", "agent_2"):
        ids.append(call(simulator, OUTBOUND_CALL_PATH, {**CALL, "agent_id": agent}).json())
        time.sleep(1.1)  # start times are whole seconds: one second apart, one order
    listing = "/v1/convai/conversations?agent_id=agent_1&page_size=1"

    first = call(simulator, listing, method="GET").json()
    second = call(simulator, f"{listing}&cursor={first['next_cursor']}", method="GET").json()

    assert [c["conversation_id"] for c in first["conversations"]] == [ids[1]["conversation_id"]]
    assert first["has_more"] is True
    assert [c["conversation_id"] for c in second["conversations"]] == [ids[0]["conversation_id"]]
    assert (second["has_more"], second["next_cursor"]) == (False, None)
    started = first["conversations"][0]["start_time_unix_secs"]
    later = call(
        simulator, f"/v1/convai/conversations?call_start_after_unix={started}", method="GET"
    )
    assert [c["agent_id"] for c in later.json()["conversations"]] == ["agent_2"]


@pytest.mark.parametrize("query", ["page_size=0", "page_size=101", "cursor=x"])
def test_the_list_with_a_bad_page_size_or_cursor_returns_422(simulator, query):
    answer = call(simulator, f"/v1/convai/conversations?{query}", method="GET")

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][0] == "query"


def test_webhooks_are_signed_as_elevenlabs_sdk_verifies_them(simulator, httpserver):
    httpserver.expect_request("/webhooks/elevenlabs/transcription").respond_with_data("ok")
    httpserver.expect_request("/webhooks/elevenlabs/post-call").respond_with_data("ok")
    simulator.webhook_url = httpserver.url_for("/")
    call(simulator, OUTBOUND_CALL_PATH, CALL)

    wait_for(lambda: len(httpserver.log) == 6, "five lines and the post-call webhook")
    events = [
        sdk_construct_event(req.get_data(as_text=True), req.headers["ElevenLabs-Signature"], SECRET)
        for req, _ in httpserver.log
    ]
    assert {tuple(sorted(line)) for line in events[:5]} == {
        ("call_sid", "message", "speaker", "timestamp")
    }
    assert events[0]["call_sid"] == "cs_0123" and events[0]["timestamp"].isdigit()
    envelope = events[5]
    assert envelope["type"] == "post_call_transcription"
    data = envelope["data"]
    assert data["conversation_initiation_client_data"]["dynamic_variables"]["call_sid"] == "cs_0123"
    for name in ("start_time_unix_secs", "call_duration_secs", "cost", "termination_reason"):
        assert data["metadata"][name] is not None, name
    assert data["analysis"]["data_collection_results"]["eta"]["value"] == "10:40"
    assert [turn["role"] for turn in data["transcript"]][:2] == ["agent", "user"]


def run_alone(*args, **env):
    """Start ``python -m elevenlabs.simulator`` with ``args``; return the process."""
    return subprocess.Popen(
        [sys.executable, "-m", "elevenlabs.simulator", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_simulator_runs_on_its_own_and_says_where():
    port = free_port()
    alone = run_alone("--port", str(port), "--webhook-url", "http://127.0.0.1:9")
    try:
        line = alone.stdout.readline()
        assert (
            line
            == f"ElevenLabs simulator on http://127.0.0.1:{port}; webhooks to http://127.0.0.1:9\n"
        )
        placed = requests.post(
            f"http://127.0.0.1:{port}{OUTBOUND_CALL_PATH}", json=CALL, timeout=10
        )
        assert placed.json()["success"] is True
    finally:
        alone.terminate()
        alone.communicate(timeout=10)


def test_the_simulator_with_a_bad_setting_says_so_in_one_line():
    alone = run_alone("--port", str(free_port()), SIMULATOR_CALL_SECONDS="eight")
    _, err = alone.communicate(timeout=30)

    assert alone.returncode == 1
    assert err == "error: SIMULATOR_CALL_SECONDS must be a number, got 'eight'\n"


def test_received_keeps_every_request_as_sent(simulator):
    call(simulator, OUTBOUND_CALL_PATH, CALL)

    [seen] = simulator.received
    assert (seen.path, seen.api_key, seen.call_sid) == (OUTBOUND_CALL_PATH, "xi_key", "cs_0123")
    assert json.dumps(seen.body, sort_keys=True) == json.dumps(CALL, sort_keys=True)


def test_an_unknown_url_or_method_returns_elevenlabs_json_error(simulator):
    unknown = call(simulator, "/v1/convai/nothing", method="GET")
    wrong_method = call(simulator, OUTBOUND_CALL_PATH, method="GET")

    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not Found"})
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
