"""``GET /metrics``: Prometheus text, behind a token, right under several gunicorn workers."""

import base64
import os
import signal
from pathlib import Path

import psycopg
import pytest
import requests
from credentials import API_TOKEN
from gunicorn_server import free_port, production_env, start, stop, wait_for, workers_of
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo
from webhook_signing import (
    POST_CALL,
    TRANSCRIPTION,
    fixture,
    make_call,
    post_signed,
    transcription_event,
)

from app import create_app
from elevenlabs.client import ElevenLabsClient
from elevenlabs.conversations import Conversations
from elevenlabs.simulator import ERROR_429_BUSY
from models import calls
from ops.reconcile import reconcile

METRICS_TOKEN = "metrics-token-0123456789"


def parse(text: str) -> dict:
    """Return every sample of a scrape as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, token: str = API_TOKEN) -> dict:
    """Scrape /metrics with a bearer token; return the parsed samples."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples: dict, name: str, **labels) -> float:
    """Return one sample's value (0 when it has not been recorded yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_refuse_a_request_without_credentials(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_made_up_methods_and_paths_add_no_series(client):
    for n in range(50):
        client.open(f"/made-up/{n}", method=f"METHOD{n}")
        client.open("/healthz", method=f"X{n}")
    samples = scrape(client)
    methods = {
        dict(labels)["method"] for (name, labels) in samples if name == "http_requests_total"
    }
    endpoints = {
        dict(labels)["endpoint"] for (name, labels) in samples if name == "http_requests_total"
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert not any(endpoint.startswith("/made-up") for endpoint in endpoints)
    assert value(samples, "http_requests_total", method="other", endpoint="unmatched", status="404")
    assert value(samples, "http_requests_total", method="other", endpoint="unmatched", status="405")


def test_metrics_token_replaces_the_api_tokens_when_set(app_config):
    from app import create_app

    app = create_app({**app_config, "METRICS_TOKENS": [METRICS_TOKEN]})
    try:
        client = app.test_client()
        assert scrape(client, METRICS_TOKEN)
        bearer = {"Authorization": f"Bearer {API_TOKEN}"}
        assert client.get("/metrics", headers=bearer).status_code == 401
    finally:
        app.extensions["db_pool"].close()


def test_metrics_count_a_webhook_accepted_and_one_rejected(client, conn):
    before = scrape(client)
    call = make_call(conn, "conv_metrics")
    line = fixture("transcription_line.json", call.call_sid)
    assert post_signed(client, TRANSCRIPTION, line).status_code == 200
    assert post_signed(client, TRANSCRIPTION, {**line, "call_sid": "cs_nobody"}).status_code == 400
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    delivered = "webhook_deliveries_total"
    assert delta(delivered, endpoint="transcription", outcome="accepted") == 1
    assert delta(delivered, endpoint="transcription", outcome="unknown_call") == 1
    route = {"method": "POST", "endpoint": TRANSCRIPTION}
    assert delta("http_requests_total", status="200", **route) == 1
    assert delta("http_requests_total", status="400", **route) == 1
    assert delta("http_request_duration_seconds_count", **route) == 2


def test_metrics_show_the_database_pool(client, app_config):
    client.get("/healthz")
    samples = scrape(client)
    assert value(samples, "db_pool_connections", state="max") == app_config["DB_POOL_MAX_SIZE"]
    assert value(samples, "db_pool_connections", state="size") >= 1
    assert ("db_pool_requests_waiting", ()) in samples


def test_metrics_count_elevenlabs_requests_and_calls_by_outcome(app_config, elevenlabs):
    from app import create_app

    app = create_app({**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url})
    try:
        client = app.test_client()
        before = scrape(client)
        order = {"driver_id": 42, "phone_number": "+14155550123"}
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        elevenlabs.answer()
        assert (
            client.post("/driver_data/call-elevenlabs", json=order, headers=auth).status_code == 201
        )
        elevenlabs.answer(ERROR_429_BUSY, status=429)
        assert (
            client.post("/driver_data/call-elevenlabs", json=order, headers=auth).status_code == 502
        )
        after = scrape(client)
    finally:
        app.extensions["db_pool"].close()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("calls_created_total", status="initiated") == 1
    assert delta("calls_created_total", status="failed") == 1
    assert delta("elevenlabs_requests_total", outcome="ok") == 1
    assert delta("elevenlabs_requests_total", outcome="rate_limited") == 1
    assert delta("elevenlabs_request_duration_seconds_count", outcome="ok") == 1


# --- several gunicorn workers ------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
def test_metrics_add_up_every_gunicorn_worker_even_after_workers_restart(database_url, tmp_path):
    port = free_port()
    env = production_env(database_url, port, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"  # a previous run's leftovers
    stale.write_bytes(b"stale")
    log = tmp_path / "gunicorn.log"
    master = start(env, log)
    base = f"http://127.0.0.1:{port}"
    served = 0

    def healthy() -> bool:
        nonlocal served
        try:
            # A fresh connection each time, so the workers share the requests out.
            ok = requests.get(f"{base}/healthz", timeout=2, headers={"Connection": "close"}).ok
        except requests.ConnectionError:
            return False
        served += ok
        return ok

    try:
        wait_for(healthy, "gunicorn to serve")
        assert not stale.exists()
        for _ in range(20):
            assert healthy()
        first = wait_for(
            lambda: len(workers_of(master.pid)) == 2 and workers_of(master.pid), "two workers"
        )
        # Replace every worker: what they counted now lives only in their files.
        for pid in first:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: len(workers_of(master.pid) - first) == 2, "two new workers")
        wait_for(healthy, "the new workers to serve")
        text = requests.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5
        ).text
        samples = parse(text)
        route = {"method": "GET", "endpoint": "/healthz", "status": "200"}
        assert value(samples, "http_requests_total", **route) == served
        # Live gauges count only live workers: child_exit dropped the dead ones' files.
        assert 10 <= value(samples, "db_pool_connections", state="max") <= 2 * 10
        leftovers = [f.name for pid in first for f in metrics_dir.glob(f"gauge_live*_{pid}.db")]
        assert leftovers == []
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
    finally:
        stop(master)
        print(log.read_text()[-4000:])  # shown when the test fails


def test_calls_ended_are_counted_by_status_and_verdict(client, conn):
    call = make_call(conn, conversation_id="conv_post_call")
    before = scrape(client)

    assert post_signed(client, POST_CALL, transcription_event(call.call_sid)).status_code == 200
    assert post_signed(client, POST_CALL, transcription_event(call.call_sid)).status_code == 200

    after = scrape(client)
    ended = {"status": "completed", "verdict": "success"}
    assert (
        value(after, "calls_ended_total", **ended) - value(before, "calls_ended_total", **ended)
        == 1
    )


def calls_ended(samples: dict) -> float:
    return value(samples, "calls_ended_total", status="completed", verdict="success")


def test_a_call_ended_by_a_delivery_rolled_back_then_retried_is_counted_once(
    client, app_config, database_url, conn
):
    url = make_conninfo(database_url, options="-c lock_timeout=300ms")
    app = create_app({**app_config, "DATABASE_URL": url})
    call = make_call(conn, conversation_id="conv_post_call")
    before = scrape(client)
    try:
        with psycopg.connect(database_url) as holder:
            # The delivery log takes no insert: the call's completion rolls back with its record.
            holder.execute("LOCK TABLE webhook_deliveries IN SHARE MODE")
            refused = post_signed(app.test_client(), POST_CALL, transcription_event(call.call_sid))
            holder.rollback()
        retried = post_signed(app.test_client(), POST_CALL, transcription_event(call.call_sid))
    finally:
        app.extensions["db_pool"].close()

    assert (refused.status_code, retried.get_json()["status"]) == (503, "accepted")
    assert calls_ended(scrape(client)) - calls_ended(before) == 1


def test_a_call_ended_by_a_replay_is_counted(client, conn):
    event = transcription_event("cs_not_yet", conversation_id="conv_from_old_code")
    refused = post_signed(client, POST_CALL, event)
    assert refused.status_code == 400
    conn.execute(
        "INSERT INTO calls (driver_id, conversation_id, status) VALUES (7, %s, 'initiated')",
        ("conv_from_old_code",),
    )
    before = scrape(client)

    delivery_id = refused.get_json()["details"]["delivery_id"]
    basic = base64.b64encode(f"ops:{API_TOKEN}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/ops/deliveries/{delivery_id}/replay", headers=headers).status_code == 303

    assert calls_ended(scrape(client)) - calls_ended(before) == 1


def test_a_call_reconcile_completes_is_counted(client, conn, simulator):
    # Dialled, then nothing recorded (a crashed process); the simulator sends no webhook.
    call = calls.create(conn, driver_id=7, phone_number="+14155550120")
    order = {
        "agent_id": "agent_7f3c2d1e9b8a",
        "agent_phone_number_id": "phnum_5b2a9c0d",
        "to_number": call.phone_number,
        "conversation_initiation_client_data": {"dynamic_variables": {"call_sid": call.call_sid}},
    }
    url = f"{simulator.base_url}/v1/convai/twilio/outbound-call"
    conversation_id = requests.post(url, json=order, timeout=10).json()["conversation_id"]
    wait_for(lambda: simulator.conversations[conversation_id]["status"] == "done", "the call's end")
    conversations = Conversations(
        ElevenLabsClient(simulator.base_url, "key", connect_timeout=2, read_timeout=5),
        simulator.base_url,
    )
    before = scrape(client)

    reconcile(conn, conversations, 0, out=lambda line: None)

    assert calls_ended(scrape(client)) - calls_ended(before) == 1


def test_reconcile_runs_and_what_they_changed_are_counted(client, conn, elevenlabs):
    calls.create(conn, driver_id=7, phone_number="+14155550120")  # ElevenLabs knows it not
    before = scrape(client)
    conversations = Conversations(
        ElevenLabsClient(elevenlabs.base_url, "key", connect_timeout=2, read_timeout=5),
        elevenlabs.base_url,
    )

    reconcile(conn, conversations, 0, out=lambda line: None)
    reconcile(conn, conversations, 0, dry_run=True, out=lambda line: None)  # not counted

    after = scrape(client)
    assert value(after, "reconcile_runs_total") - value(before, "reconcile_runs_total") == 1
    failed = {"result": "failed"}
    assert (
        value(after, "reconcile_calls_total", **failed)
        - value(before, "reconcile_calls_total", **failed)
        == 1
    )


def test_calls_in_flight_against_the_cap_and_open_batch_entries_are_read_when_scraped(
    client, conn, auth_headers
):
    calls.create(conn, driver_id=7, phone_number="+14155550120")  # initiating: in flight
    batch = {
        "name": "night shift",
        "calls": [{"driver_id": n, "phone_number": f"+1415555013{n}"} for n in range(1, 4)],
        "window": {"start": "00:00", "end": "23:59"},
    }
    assert (
        client.post("/driver_data/call-batches", json=batch, headers=auth_headers).status_code
        == 202
    )

    samples = scrape(client)

    assert value(samples, "calls_in_flight") == 1
    assert value(samples, "calls_in_flight_cap") == 5  # MAX_CONCURRENT_CALLS' default
    waiting = [value(samples, "batch_entries", state=s) for s in ("queued", "waiting_window")]
    assert sum(waiting) == 3  # waiting_window only in the day's last minute
    assert value(samples, "batch_entries", state="completed") == 0
