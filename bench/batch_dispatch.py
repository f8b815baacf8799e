"""Dispatch a batch of N drivers with two workers; print time, peak in flight, dials per number.

    python bench/batch_dispatch.py [--drivers 1000] [--cap 50] [--call-seconds 0.5] [--workers 2]

Everything runs here: a throwaway embedded PostgreSQL, the app under gunicorn,
``python -m dispatch worker`` processes, and a stand-in for ElevenLabs that
answers at once, refuses with 429 beyond ``--cap`` conversations (as ElevenLabs
does over a plan's concurrency), and after ``--call-seconds`` ends each
conversation with a signed ``post_call_transcription`` webhook to the app.
"""

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import requests
from harness import ROOT, CpuAccount, cpu_seconds, free_port, running_app, throwaway_database

SECRET, TOKEN = "bench-webhook-secret", "bench-token"


class ElevenLabs(ThreadingHTTPServer):
    """Answers outbound calls at once, counts conversations, ends each after a while."""

    request_queue_size = 256  # http.server's 5 would refuse connections under the dialling

    def __init__(self, cap: int, call_seconds: float, app_url: str):
        super().__init__(("127.0.0.1", free_port()), Handler)
        self.cap, self.call_seconds, self.app_url = cap, call_seconds, app_url
        self.lock, self.talking, self.peak, self.refused = threading.Lock(), 0, 0, 0
        self.dials: dict[str, int] = {}
        self.ids = 0

    def start_call(self, body: dict) -> dict | None:
        with self.lock:
            if self.talking >= self.cap:
                self.refused += 1
                return None
            self.talking += 1
            self.peak = max(self.peak, self.talking)
            self.ids += 1
            self.dials[body["to_number"]] = self.dials.get(body["to_number"], 0) + 1
            conversation = f"conv_{self.ids:07d}"
        call_sid = body["conversation_initiation_client_data"]["dynamic_variables"]["call_sid"]
        threading.Timer(self.call_seconds, self.end_call, (call_sid, conversation)).start()
        return {"success": True, "message": "ok", "conversation_id": conversation, "callSid": None}

    def end_call(self, call_sid: str, conversation: str) -> None:
        event = {
            "type": "post_call_transcription",
            "event_timestamp": int(time.time()),
            "data": {
                "conversation_id": conversation,
                "status": "done",
                "transcript": [],
                "metadata": {"call_duration_secs": 1},
                "conversation_initiation_client_data": {
                    "dynamic_variables": {"call_sid": call_sid}
                },
            },
        }
        body = json.dumps(event).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "ElevenLabs-Signature": f"t={stamp},v0={digest.hexdigest()}",
        }
        with self.lock:  # the conversation is over before the app hears of it
            self.talking -= 1
        url = self.app_url + "/webhooks/elevenlabs/post-call"
        requests.post(url, data=body, headers=headers, timeout=30).raise_for_status()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = self.server.start_call(body)
        status = 200 if answer else 429
        if answer is None:
            answer = {"detail": {"status": "too_many_concurrent_requests", "message": "busy"}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def post_batch(app_url: str, drivers: int) -> str:
    calls = [{"driver_id": i + 1, "phone_number": f"+1415{i:07d}"} for i in range(drivers)]
    body = {"name": "bench", "calls": calls, "window": {"start": "00:00", "end": "23:59"}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = requests.post(
        app_url + "/driver_data/call-batches", json=body, headers=headers, timeout=60
    )
    answer.raise_for_status()
    return answer.json()["batch_id"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drivers", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=50)
    parser.add_argument("--call-seconds", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with throwaway_database() as (url, _postmaster):
        fake = ElevenLabs(args.cap, args.call_seconds, "")
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        env = {
            "DATABASE_URL": url,
            "API_TOKENS": TOKEN,
            "ELEVENLABS_WEBHOOK_SECRET": SECRET,
            "ELEVENLABS_API_KEY": "xi_bench",
            "ELEVENLABS_AGENT_ID": "agent_bench",
            "ELEVENLABS_PHONE_NUMBER_ID": "phnum_bench",
            "ELEVENLABS_BASE_URL": f"http://127.0.0.1:{fake.server_address[1]}",
            "MAX_CONCURRENT_CALLS": str(args.cap),
            "LOG_LEVEL": "WARNING",
        }
        with running_app(env) as (_server, port):
            fake.app_url = f"http://127.0.0.1:{port}"
            batch_id = post_batch(fake.app_url, args.drivers)
            started = time.monotonic()
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "dispatch", "worker"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]
            parties = {
                f"worker {i + 1}": (lambda p=w.pid: cpu_seconds(p)) for i, w in enumerate(workers)
            }
            with CpuAccount(parties) as cpu, psycopg.connect(url, autocommit=True) as conn:
                query = "SELECT status FROM call_batches WHERE batch_id = %s"
                while conn.execute(query, (batch_id,)).fetchone()[0] != "completed":
                    time.sleep(0.05)
                elapsed = time.monotonic() - started
                states = conn.execute(
                    "SELECT e.state, c.failure_reason, count(*) FROM call_batch_entries e "
                    "LEFT JOIN calls c ON c.call_sid = e.current_call_sid GROUP BY 1, 2"
                ).fetchall()
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=30)
    dials = sum(fake.dials.values())
    print(
        f"drivers {args.drivers}, cap {args.cap}, ElevenLabs concurrency {args.cap}, "
        f"conversations {args.call_seconds}s, workers {args.workers}"
    )
    print(
        f"time to dispatch all (batch posted -> batch completed): {elapsed:.1f}s "
        f"({args.drivers / elapsed:.1f} drivers/s)"
    )
    print(f"peak in flight at ElevenLabs: {fake.peak} (cap {args.cap}); 429s: {fake.refused}")
    print(f"dials per number: max {max(fake.dials.values())}, numbers dialled {len(fake.dials)}")
    print(f"worker CPU per dial: {cpu.per(dials)}")
    print(
        "entries: "
        + ", ".join(f"{n} {state}" + (f" ({why})" if why else "") for state, why, n in states)
    )


if __name__ == "__main__":
    main()
