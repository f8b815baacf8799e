"""Run the app under gunicorn with its production config, for tests of what only gunicorn does."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from credentials import API_TOKEN, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    """Return the environment of a production run on ``port`` with two workers."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "API_TOKENS": API_TOKEN,
        "ELEVENLABS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ELEVENLABS_API_KEY": "xi_test_key",
        "ELEVENLABS_AGENT_ID": "agent_7f3c2d1e9b8a",
        "ELEVENLABS_PHONE_NUMBER_ID": "phnum_5b2a9c0d",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        **extra,
    }


def start(env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start gunicorn as production does, its output going to ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(master: subprocess.Popen) -> None:
    """Stop gunicorn (a no-op when it already exited), killing it if it will not go."""
    if master.poll() is None:
        master.send_signal(signal.SIGTERM)
    try:
        master.wait(timeout=30)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait(timeout=30)


def workers_of(master: int) -> set[int]:
    """Return the pids of a gunicorn master's workers (its child processes)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def serving(port: int) -> bool:
    """Return whether /healthz on ``port`` answers 200 within 2 s."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
    except (requests.ConnectionError, requests.Timeout):  # not yet: the caller asks again
        return False


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
