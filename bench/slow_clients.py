"""How long /healthz waits while idle and slow clients hold connections open.

Runs the app under gunicorn (its production config, 2 workers x 8 threads) on
a throwaway embedded PostgreSQL: with gunicorn's own gthread worker (the floor,
what serving/worker.py replaced) and with ours, each alone and behind nginx
started from deploy/nginx.conf. For each kind of client it opens them all, then
times one GET /healthz (10 s at most: "-" is no answer by then), closes them
and waits for the server to answer again. The last row is gunicorn's CPU
milliseconds per /healthz over 1,000 in a row, each on a new connection: the
worker's own cost (CPU, not wall time, which the other work on a shared
machine moves more).

    .venv/bin/python bench/slow_clients.py [--clients 100]
"""

import argparse
import http.client
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from harness import ROOT, cpu_seconds, free_port, running_app, throwaway_database

sys.path.insert(0, str(ROOT / "tests"))
import nginx_server
from credentials import API_TOKEN
from slow_clients import (
    HALF_A_REQUEST_LINE,
    HEAD_OF_A_DRIPPED_BODY,
    HEAD_WITHOUT_ITS_END,
    dripping_clients,
    idle_clients,
)

WAIT = 10.0


def healthz(port: int) -> float | None:
    """Return the seconds one GET /healthz took to answer 200, None when it did not in time."""
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        connection.request("GET", "/healthz")
        ok = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return None
    return time.monotonic() - started if ok else None


def wait_answering(port: int) -> None:
    """Wait until /healthz on ``port`` answers again, a minute at most."""
    deadline = time.monotonic() + 60
    while healthz(port) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"error: nothing answers /healthz on port {port} after a minute")
        time.sleep(0.1)


def column(port: int, count: int, gunicorn: int) -> list[float | None]:
    """Return /healthz's seconds beside ``count`` clients of each kind, then its CPU ms."""
    kinds = [
        nullcontext,
        lambda: idle_clients(port, count),
        lambda: idle_clients(port, count, HALF_A_REQUEST_LINE),
        lambda: dripping_clients(port, count, heads=[HEAD_WITHOUT_ITS_END]),
        lambda: dripping_clients(port, count, heads=[HEAD_OF_A_DRIPPED_BODY]),
    ]
    figures = []
    for clients in kinds:
        with clients():
            figures.append(healthz(port))
        wait_answering(port)  # the next kind starts on a server that answers again
    used = cpu_seconds(gunicorn)
    for _ in range(1000):
        healthz(port)
    return [*figures, cpu_seconds(gunicorn) - used]  # seconds per 1,000: ms per request


def main() -> None:
    """Print /healthz's seconds for each kind of client, per worker and front."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, help="slow clients of each kind")
    count = parser.parse_args().clients
    columns = {}
    with throwaway_database() as (url, _postmaster):
        settings = {
            "APP_ENV": "production",
            "DATABASE_URL": url,
            "API_TOKENS": API_TOKEN,
            "ELEVENLABS_WEBHOOK_SECRET": "bench-secret",
            "ELEVENLABS_API_KEY": "bench-key",
            "ELEVENLABS_AGENT_ID": "agent_bench",
            "ELEVENLABS_PHONE_NUMBER_ID": "phnum_bench",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "8",
        }
        for worker, options in [("gthread", ["--worker-class", "gthread"]), ("ours", [])]:
            with running_app(settings, options=options) as (server, port):
                columns[worker] = column(port, count, server.pid)
                with tempfile.TemporaryDirectory(prefix="bench-nginx-") as folder:
                    front = free_port()
                    nginx = nginx_server.start(front, port, Path(folder))
                    try:
                        wait_answering(front)
                        columns[f"{worker}+nginx"] = column(front, count, server.pid)
                    finally:
                        nginx_server.stop(nginx)
    rows = [
        "nobody else",
        f"{count} idle, nothing sent",
        f"{count} idle, half a request line",
        f"{count} dripping their head",
        f"{count} dripping their body",
        "gunicorn CPU ms per /healthz",
    ]
    print(f"{'/healthz s beside':38}" + "".join(f"{name:>15}" for name in columns))
    for number, row in enumerate(rows):
        cells = [figures[number] for figures in columns.values()]
        print(f"{row:38}" + "".join(f"{'-' if s is None else f'{s:.3f}':>15}" for s in cells))


if __name__ == "__main__":
    main()
