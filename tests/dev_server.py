"""Run ``make run``'s entry point (``serve.py``) as a newcomer would: no settings, fresh data."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
from gunicorn_server import ROOT, free_port, wait_for

# What a newcomer has not set; a test sets what it needs on top.
UNSET = ("DATABASE_URL", "API_TOKENS", "ELEVENLABS_API_KEY", "ELEVENLABS_WEBHOOK_SECRET", "PORT")


class DevServer:
    """``serve.py`` in a subprocess, its output collected line by line."""

    def __init__(self, data: Path, **env: str):
        self.data = data
        self.port = free_port()
        base = {
            k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("ELEVEN")
        }
        self.env = {
            **base,
            "EMBEDDED_PGDATA": str(data),
            # gunicorn's metrics folder goes here, not into the machine's /tmp.
            "TMPDIR": str(data.parent),
            "PORT": str(self.port),
            "SIMULATOR_CALL_SECONDS": "1",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            **env,
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "serve.py"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Until every process holding the pipe has gone: serve.py and its children.
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))

    def printed(self, prefix: str, timeout: float = 180) -> str:
        """Return the first line printed that starts with ``prefix``."""

        def found():
            return next((line for line in self.lines if line.startswith(prefix)), None)

        return wait_for(
            found, f"{prefix!r} in the output of serve.py:\n" + "\n".join(self.lines), timeout
        )

    def stop(self, sig=signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit status once serve.py is gone."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def postgres_of(data: Path) -> psutil.Process | None:
    """Return the PostgreSQL server running on ``data``, or None."""
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(data) in (process.info["cmdline"] or []):
            return process
    return None
