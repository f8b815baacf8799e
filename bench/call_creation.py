"""Bench call creation: our own overhead per call with ElevenLabs answering at once.

    python bench/call_creation.py [--seconds 10] [--clients 8] [--workers 2] [--connection-per-call]

Starts a throwaway embedded PostgreSQL (migrations applied), a local stand-in
for ElevenLabs that answers at once, and the app under gunicorn with the
production settings; then N clients create calls for a fixed time. Overhead is
each call's latency minus the time the stand-in spent on it: our validation,
two writes, the HTTP hop and serialisation.

It runs two parties one after the other against the same database and stand-in:
the floor, ``floor_app`` below (~20 lines of Flask under gunicorn's sync
workers: insert the row, ``requests.post`` to ElevenLabs, update the row), then
the app with every guarantee kept; and prints project/floor (target >= 0.9).

It also prints the CPU each party used per call in the measured window (the
app's gunicorn processes, PostgreSQL, this process's clients and stand-in) and
what that implies: all parties share the machine's CPUs, so with N calls always
in flight no call can take less than N x (CPU per call) / CPUs. The app's CPU is
also shown per gunicorn worker: the workers share one listening socket, and a
kept-alive client stays on the worker that accepted it, so one worker (one GIL)
may serve them all. ``--connection-per-call`` opens a connection per call, as a
proxy in front does by default (nginx's proxy_pass without upstream keepalive).
"""

import argparse
import contextlib
import http.client
import itertools
import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The project root (the app's modules) and this folder (harness), run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CpuAccount, cpu_seconds, running_app, throwaway_database

TOKEN = "bench-token"  # noqa: S105  (a throwaway server's token)


class FakeElevenLabs(BaseHTTPRequestHandler):
    """Answer every outbound call at once, noting how long each took us here."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    # Headers and body go out in two writes: without this, Nagle holds the body
    # back for the client's delayed ACK (40 ms), which is no part of our overhead.
    disable_nagle_algorithm = True
    spent: dict = {}  # noqa: RUF012  (shared on purpose: the server's one record)
    ids = itertools.count(1)

    def do_POST(self):
        """Answer success with a fresh conversation_id."""
        started = time.perf_counter()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        call_sid = body["conversation_initiation_client_data"]["dynamic_variables"]["call_sid"]
        n = next(self.ids)
        answer = json.dumps(
            {
                "success": True,
                "message": "Call initiated successfully",
                "conversation_id": f"conv_bench_{n}",
                "callSid": f"CA{n:032x}",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.spent[call_sid] = time.perf_counter() - started

    def log_message(self, *args):
        """Stay quiet: the bench prints its own figures."""


def floor_app():
    """Return the floor: ~20 lines of Flask that insert the row, ask ElevenLabs, update the row."""
    import uuid

    import flask
    import requests
    from psycopg_pool import ConnectionPool

    app = flask.Flask(__name__)
    pool = ConnectionPool(os.environ["DATABASE_URL"], kwargs={"autocommit": True}, open=True)
    elevenlabs = requests.Session()
    url = os.environ["ELEVENLABS_BASE_URL"] + "/v1/convai/twilio/outbound-call"

    @app.post("/driver_data/call-elevenlabs")
    def create():
        sent, call_sid = flask.request.get_json(), f"cs_{uuid.uuid4().hex}"
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO calls (call_sid, driver_id, phone_number, status)"
                " VALUES (%s, %s, %s, 'initiating')",
                (call_sid, sent["driver_id"], sent["phone_number"]),
            )
        answer = elevenlabs.post(
            url,
            headers={"xi-api-key": os.environ["ELEVENLABS_API_KEY"]},
            json={
                "agent_id": os.environ["ELEVENLABS_AGENT_ID"],
                "agent_phone_number_id": os.environ["ELEVENLABS_PHONE_NUMBER_ID"],
                "to_number": sent["phone_number"],
                "conversation_initiation_client_data": {
                    "dynamic_variables": {"call_sid": call_sid}
                },
            },
            timeout=(5, 20),
        ).json()
        with pool.connection() as conn:
            conn.execute(
                "UPDATE calls SET status = 'initiated', conversation_id = %s WHERE call_sid = %s",
                (answer["conversation_id"], call_sid),
            )
        return {"call_sid": call_sid, "conversation_id": answer["conversation_id"]}, 201

    return app


# The floor under gunicorn's sync workers (one request at a time per worker, no
# keep-alive; gunicorn turns sync into gthread when threads > 1, hence --threads 1),
# the project under its production settings (gthread).
FLOOR_AND_PROJECT = (
    ("floor", "call_creation:floor_app()", ["--worker-class", "sync", "--threads", "1"]),
    ("project", None, []),
)


def app_settings(database_url: str, elevenlabs_url: str, workers: int) -> dict[str, str]:
    """Return the environment the app runs with: production settings, the local stand-in."""
    return {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "API_TOKENS": TOKEN,
        "ELEVENLABS_WEBHOOK_SECRET": "wsec_bench",
        "ELEVENLABS_BASE_URL": elevenlabs_url,
        "ELEVENLABS_API_KEY": "xi_bench",
        "ELEVENLABS_AGENT_ID": "agent_bench",
        "ELEVENLABS_PHONE_NUMBER_ID": "phnum_bench",
        "WEB_CONCURRENCY": str(workers),
    }


def drive(port: int, args, accounts: list[CpuAccount]) -> tuple:
    """Create calls from ``args.clients`` threads; return (latency, call_sid) pairs and errors.

    The CPU ``accounts`` are entered and left at the edges of the measured window.
    """
    clients, seconds, warmup = args.clients, args.seconds, args.warmup
    results, errors, lock = [], [0], threading.Lock()
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    body = json.dumps(
        {"driver_id": 42, "phone_number": "+14155550123", "variables": {"load_id": "L-77"}}
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    if args.connection_per_call:
        headers["Connection"] = "close"  # http.client opens a new one for the next call

    def client():
        # http.client, not requests: the load generator shares the CPU with what it measures.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (now := time.monotonic()) < stop_at:
            began = time.perf_counter()
            connection.request("POST", "/driver_data/call-elevenlabs", body, headers)
            response = connection.getresponse()
            answer = response.read()
            latency = time.perf_counter() - began
            with lock:
                if response.status != 201:
                    errors[0] += 1
                elif now >= measure_from:
                    results.append((latency, json.loads(answer)["call_sid"]))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    with contextlib.ExitStack() as measuring:
        for account in accounts:
            measuring.enter_context(account)
        time.sleep(max(0.0, stop_at - time.monotonic()))
    for thread in threads:
        thread.join()
    return results, errors[0]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def per_worker(server_pid: int) -> CpuAccount:
    """Return an account of the CPU each of the app's gunicorn workers uses."""
    workers = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return CpuAccount({f"worker {pid}": lambda pid=int(pid): cpu_seconds(pid) for pid in workers})


def report(results: list, errors: int, args, cpu: CpuAccount, workers: CpuAccount) -> None:
    latencies = [latency * 1000 for latency, _ in results]
    overheads = [
        (latency - FakeElevenLabs.spent.get(call_sid, 0.0)) * 1000 for latency, call_sid in results
    ]
    calls, cpus = len(results), os.cpu_count()
    print(
        f"clients: {args.clients}  measured: {args.seconds:g} s  calls: {calls}  errors: {errors}"
    )
    print(f"calls/s: {calls / args.seconds:.1f}")
    print(f"latency  ms: p50 {percentile(latencies, 50):.2f}  p99 {percentile(latencies, 99):.2f}")
    p50 = percentile(overheads, 50)
    print(f"overhead ms: p50 {p50:.2f}  p99 {percentile(overheads, 99):.2f}")
    fake = [s * 1000 for s in FakeElevenLabs.spent.values()]
    print(f"fake ElevenLabs ms: p50 {percentile(fake, 50):.3f}")
    # Every party runs on the same CPUs, so with ``clients`` calls always in flight a
    # call cannot take less than clients x (CPU per call) / CPUs (Little's law).
    total = cpu.total_per(calls)
    print(f"CPU per call: {cpu.per(calls)}; {total:.2f} ms in all on {cpus} CPUs")
    print(f"app's CPU per call by worker: {workers.per(calls)}")
    print(
        f"lower bound at {args.clients} clients: {args.clients} x {total:.2f} / {cpus}"
        f" = {args.clients * total / cpus:.2f} ms per call"
    )


def main() -> int:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description="Bench POST /driver_data/call-elevenlabs.")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--connection-per-call", action="store_true", help="no keep-alive: a connection per call"
    )
    args = parser.parse_args()

    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeElevenLabs)
    fake.daemon_threads = True
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        with throwaway_database() as (url, postmaster):
            settings = app_settings(url, f"http://127.0.0.1:{fake.server_port}", args.workers)
            rates = {}
            for name, app, options in FLOOR_AND_PROJECT:
                with running_app(settings, app, options) as (server, port):
                    cpu = CpuAccount(
                        {
                            "app": lambda: cpu_seconds(server.pid),
                            "PostgreSQL": lambda: cpu_seconds(postmaster),
                            "clients + stand-in": time.process_time,
                        }
                    )
                    workers = per_worker(server.pid)
                    results, errors = drive(port, args, [cpu, workers])
                print(f"--- {name}")
                report(results, errors, args, cpu, workers)
                rates[name] = len(results) / args.seconds
            print(f"project/floor {rates['project'] / rates['floor']:.2f}   (target >= 0.9)")
    finally:
        fake.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
