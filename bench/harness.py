"""What the HTTP benches share: a throwaway database, the app under gunicorn, CPU accounts.

The benches run everything on one machine, so a figure means little without
knowing who used the CPUs: ``CpuAccount`` reads each party's CPU time from
/proc (Linux) before and after the measured window.
"""

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embedded_db  # noqa: E402
from migrations.kit import Run  # noqa: E402
from migrations.migrate import move  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_database() -> Iterator[tuple[str, int]]:
    """Yield (URL of a migrated database, postmaster pid) on a throwaway embedded server."""
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as data:
        server = embedded_db.start(Path(data) / "data", throwaway=True)
        try:
            with psycopg.connect(embedded_db.url(server), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
            url = embedded_db.url(server, "bench")
            move(url, "up", None, Run(out=lambda line: None))
            postmaster = int((Path(data) / "data" / "postmaster.pid").read_text().split()[0])
            yield url, postmaster
        finally:
            server.cleanup()


BOOT_GRACE_SECONDS = 3


@contextlib.contextmanager
def running_app(
    settings: dict[str, str], app: str | None = None, options: list[str] = ()
) -> Iterator[tuple[subprocess.Popen, int]]:
    """Run an app (ours by default) under gunicorn with our production config.

    Yields (process, port) once it answers. Another ``app`` is a ``module:factory()``
    under bench/ (a floor to compare with), served by the same settings but for
    gunicorn ``options`` given on the command line.
    """
    port = free_port()
    env = {**os.environ, **settings, "HOST": "127.0.0.1", "PORT": str(port)}
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "bench"), env.get("PYTHONPATH", "")))
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *options]
    server = subprocess.Popen(
        [*command, app or "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(port, server)
        # The first answer says one worker is up, not every one: a worker still
        # importing the app when the load's keep-alive connections open gets none
        # of them, and the run measures one worker on two CPUs.
        time.sleep(BOOT_GRACE_SECONDS)
        yield server, port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_healthy(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            # A floor has no /healthz: its 404 says it serves; ours answers 503 until ready.
            if connection.getresponse().status in (200, 404):
                return
        except OSError:
            time.sleep(0.2)
    if server.poll() is not None:
        raise SystemExit(f"error: the app exited with status {server.returncode} before serving")
    raise SystemExit("error: the app did not come up within 60 s")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """Return (parent pid, CPU seconds, CPU seconds of its reaped children) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state, ppid, ...; utime, stime, cutime, cstime are fields 14-17.
    own = (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND
    reaped = (int(fields[13]) + int(fields[14])) / TICKS_PER_SECOND
    return int(fields[1]), own, reaped


def cpu_seconds(root: int) -> float:
    """Return the CPU seconds used so far by ``root`` and its children, live or reaped.

    A child that exited counts through its parent's reaped-children time (a
    PostgreSQL backend that closed, a gunicorn worker that was replaced).
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parent, own, reaped = stat
            if int(entry.name) == root:
                total += own + reaped
            elif parent == root:
                total += own
    return total


class CpuAccount:
    """CPU seconds each party used in a window; a party is a name and a CPU-seconds reader."""

    def __init__(self, parties: dict[str, Callable[[], float]]):
        self.parties = parties
        self.start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def __enter__(self):
        self.start = {name: read() for name, read in self.parties.items()}
        return self

    def __exit__(self, *exc):
        self.used = {name: read() - self.start[name] for name, read in self.parties.items()}

    def per(self, count: int) -> str:
        """Return e.g. ``app 1.90 ms, PostgreSQL 0.70 ms``: CPU per one of ``count`` things."""
        return ", ".join(
            f"{name} {seconds / count * 1000:.2f} ms" for name, seconds in self.used.items()
        )

    def total_per(self, count: int) -> float:
        """Return the CPU milliseconds of every party together per one of ``count`` things."""
        return sum(self.used.values()) / count * 1000
