"""A real ``python -m dispatch worker``: reconciliation never holds up dialling.

ElevenLabs is a small local stand-in whose conversations API hangs (the
simulator answers every read at once): the outbound call is answered, every
conversation GET waits until the test lets it go.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from batch_support import batch_body, dispatch_settings

import db
from dispatch import tasks
from dispatch.rounds import Worker
from elevenlabs.client import ElevenLabsClient
from elevenlabs.simulator import answers, script

ROOT = Path(__file__).resolve().parents[1]
PATIENCE_SECONDS = 120  # the first reconcile run starts with the worker: a bound, not a target
PROMPT_SECONDS = 10  # a batch posted while reconcile hangs is dialled within this


class HangingConversations(ThreadingHTTPServer):
    """Answers the outbound call at once; holds every conversation GET until ``release``."""

    daemon_threads = True

    def __init__(self):
        self.events: list[tuple[str, float]] = []  # ("read" | "dial", monotonic), in order
        self.reading, self.dialled, self.released = (threading.Event() for _ in range(3))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Quiet: the test says what it saw."""

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.events.append(("dial", time.monotonic()))
                server.dialled.set()
                self._json(script.with_new_ids(answers.ANSWER_OK))

            def do_GET(self):
                server.events.append(("read", time.monotonic()))
                server.reading.set()
                server.released.wait(PATIENCE_SECONDS)
                self._json({"detail": "not here"}, 404)

            def _json(self, body, status=200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the killed worker is gone
                    self.wfile.write(data)

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def hanging_elevenlabs():
    """Return the stand-in, serving; stopped after."""
    server = HangingConversations()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()


def test_batch_posted_while_reconcile_waits_on_elevenlabs_is_dialled_promptly(
    client, conn, database_url, app_config, auth_headers, hanging_elevenlabs
):
    conn.execute(
        """
        INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id, created_at)
        SELECT 'cs_open_' || i, i, '+1415666' || lpad(i::text, 4, '0'), 'initiated',
               'conv_open_' || i, now() - interval '1 hour'
          FROM generate_series(1, 30) AS i
        """
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ELEVENLABS_BASE_URL": f"http://127.0.0.1:{hanging_elevenlabs.server_port}",
        "ELEVENLABS_API_KEY": "xi_test_key",
        "ELEVENLABS_AGENT_ID": app_config["ELEVENLABS_AGENT_ID"],
        "ELEVENLABS_PHONE_NUMBER_ID": app_config["ELEVENLABS_PHONE_NUMBER_ID"],
        "CALLING_WINDOW": "00:00-23:59",
        "CALLING_TIMEZONE": "UTC",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hanging_elevenlabs.reading.wait(PATIENCE_SECONDS), "reconcile never asked"
        body = batch_body(["+14155550100"], window={"start": "00:00", "end": "23:59"})
        assert (
            client.post("/driver_data/call-batches", json=body, headers=auth_headers).status_code
            == 202
        )
        posted = time.monotonic()

        assert hanging_elevenlabs.dialled.wait(PROMPT_SECONDS), "no dial while reconcile waits"
        kinds = [kind for kind, _ in hanging_elevenlabs.events]
        # Dialled while a reconcile read was still held: the run did not hold it up.
        assert kinds[0] == "read"
        assert not hanging_elevenlabs.released.is_set()
        assert next(at for kind, at in hanging_elevenlabs.events if kind == "dial") >= posted
    finally:
        worker.kill()
        worker.wait(timeout=10)


def test_reconcile_tick_due_while_the_last_run_waits_on_elevenlabs_ends_at_once(
    conn, database_url, app_config, hanging_elevenlabs
):
    conn.execute(
        "INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id, created_at)"
        " VALUES ('cs_open', 1, '+14156660001', 'initiated', 'conv_open', now() - interval '1h')"
    )
    base_url = f"http://127.0.0.1:{hanging_elevenlabs.server_port}"
    pool = db.open_pool(database_url, min_size=1, max_size=4, timeout=5)
    client = ElevenLabsClient(base_url, "xi_test_key", connect_timeout=2, read_timeout=15)
    service_config = {**app_config, "ELEVENLABS_BASE_URL": base_url}
    tasks.use(Worker(pool, client, dispatch_settings(), service_config))
    last_run = threading.Thread(target=tasks.reconcile, args=(0,), daemon=True)
    try:
        last_run.start()
        assert hanging_elevenlabs.reading.wait(PATIENCE_SECONDS), "reconcile never asked"
        started = time.monotonic()

        tasks.reconcile(timestamp=60)  # the next minute's tick, on the worker's other slot

        assert time.monotonic() - started < PROMPT_SECONDS
        assert [kind for kind, _ in hanging_elevenlabs.events] == ["read"]  # asked nothing more
    finally:
        hanging_elevenlabs.released.set()
        last_run.join(timeout=30)
        tasks.use(None)
        pool.close()
