"""Bench call creation: our own overhead per call with ElevenLabs answering at once.

    python bench/call_creation.py [--seconds 10] [--clients 8] [--workers 2]

Starts a throwaway embedded PostgreSQL (migrations applied), a local stand-in
for ElevenLabs that answers at once, and the app under gunicorn with the
production settings; then N clients create calls for a fixed time. Overhead is
each call's latency minus the time the stand-in spent on it: our validation,
two writes, the HTTP hop and serialisation. Target: p50 overhead <= 5 ms.
"""

import argparse
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embedded_db  # noqa: E402
from migrations.kit import Run  # noqa: E402
from migrations.migrate import move  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(database_url: str, elevenlabs_url: str, workers: int) -> tuple:
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "API_TOKENS": TOKEN,
        "ELEVENLABS_BASE_URL": elevenlabs_url,
        "ELEVENLABS_API_KEY": "xi_bench",
        "ELEVENLABS_AGENT_ID": "agent_bench",
        "ELEVENLABS_PHONE_NUMBER_ID": "phnum_bench",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except requests.ConnectionError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("error: the app did not come up within 60 s")


def drive(base: str, clients: int, seconds: float, warmup: float) -> tuple[list, int]:
    """Create calls from ``clients`` threads; return (latency, call_sid) pairs and errors."""
    results, errors, lock = [], [0], threading.Lock()
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    body = json.dumps(
        {"driver_id": 42, "phone_number": "+14155550123", "variables": {"load_id": "L-77"}}
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    host, port = base.removeprefix("http://").split(":")

    def client():
        # http.client, not requests: the load generator shares the CPU with what it measures.
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
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
    for thread in threads:
        thread.join()
    return results, errors[0]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(results: list, errors: int, seconds: float, clients: int) -> None:
    latencies = [latency * 1000 for latency, _ in results]
    overheads = [
        (latency - FakeElevenLabs.spent.get(call_sid, 0.0)) * 1000 for latency, call_sid in results
    ]
    print(
        f"clients: {clients}  measured: {seconds:g} s  calls: {len(results)}  errors: {errors}"
        f"  (CPUs, shared by clients, app, PostgreSQL and fake: {os.cpu_count()})"
    )
    print(f"calls/s: {len(results) / seconds:.1f}")
    print(f"latency  ms: p50 {percentile(latencies, 50):.2f}  p99 {percentile(latencies, 99):.2f}")
    p50 = percentile(overheads, 50)
    print(f"overhead ms: p50 {p50:.2f}  p99 {percentile(overheads, 99):.2f}  (target p50 <= 5)")
    fake = [s * 1000 for s in FakeElevenLabs.spent.values()]
    print(f"fake ElevenLabs ms: p50 {percentile(fake, 50):.3f}")


def main() -> int:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description="Bench POST /driver_data/call-elevenlabs.")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as data:
        db_server = embedded_db.start(Path(data) / "data", throwaway=True)
        fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeElevenLabs)
        fake.daemon_threads = True
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        app = None
        try:
            with psycopg.connect(embedded_db.url(db_server), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
            url = embedded_db.url(db_server, "bench")
            move(url, "up", None, Run(out=lambda line: None))
            app, base = start_app(url, f"http://127.0.0.1:{fake.server_port}", args.workers)
            results, errors = drive(base, args.clients, args.seconds, args.warmup)
            report(results, errors, args.seconds, args.clients)
        finally:
            if app is not None:
                app.terminate()
                app.wait(timeout=30)
            fake.shutdown()
            db_server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
