"""Gunicorn settings for production: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``.

Threads rather than processes alone: a call creation waits on ElevenLabs for
up to ELEVENLABS_READ_TIMEOUT seconds, and that wait must not hold a whole worker.
"""

import errno
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# gthread, but an idle or slow client waits on the worker's poller, not in one of
# its threads, until its request head is whole (serving/worker.py says why).
worker_class = "serving.worker.ParkingWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
# Seconds a kept-alive connection may wait for its next request, and a new one
# may take to send its request head (gunicorn's default; the proxy sends at once).
keepalive = 2
# One listening socket, shared by the workers (reuse_port off). With a socket per
# worker (SO_REUSEPORT) a reload resets the connections still queued on each old
# worker's socket when it closes: 16 of them in three HUPs under load in
# tests/test_gunicorn_production.py; with one shared socket it passed in all but
# one of about ten runs on a busy machine (that one's cause unseen). The price: the
# first worker awake may take more than its share of long-lived keep-alive
# connections; the proxy in front (README) opens and recycles them instead.
reuse_port = False
graceful_timeout = 30
# gunicorn's control socket (gunicornc) is not used here, and its default path
# ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl) is one per host: a second
# server on the machine would take over the first one's.
control_socket_disable = True

# Requests are logged by the app itself, as JSON lines.
accesslog = None

# Every worker writes its metrics to files here and /metrics sums them
# (prometheus-client's multiprocess mode). It must be set before a worker
# imports the app, which is why it is decided here, in the master.
_metrics_dir_made = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_made:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="call-sid-metrics-")


def on_starting(server):
    """Refuse to start, in one line, on a configuration or database that cannot work."""
    import config
    import db

    # The pool warns once per failed attempt; our one line below says it all.
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.setLevel(logging.CRITICAL)
    try:
        settings = config.from_env()
        config.check(settings)
        if settings["DATABASE_URL"]:
            db.open_pool(settings["DATABASE_URL"], min_size=1, max_size=1, timeout=5).close()
    except (config.ConfigError, db.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        pool_log.setLevel(logging.NOTSET)
    _refuse_if_port_taken(server.cfg.address)
    _clear_metrics_dir()


def _refuse_if_port_taken(addresses):
    """Exit in one line when something already listens where we are to listen.

    Gunicorn itself would retry the bind for seconds and then print its own
    lines; and a listener opened with SO_REUSEPORT (another gunicorn
    configured so) would be shared silently. A probe bound without it finds
    any listener.
    """
    for address in addresses:
        if not isinstance(address, tuple):  # a unix socket: not shared by reuse_port
            continue
        host, port = address[0], address[1]
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                print(f"error: {host}:{port} is already in use by another server", file=sys.stderr)
                sys.exit(1)


def _clear_metrics_dir():
    """Remove a previous run's metric files, which would otherwise be summed into this one's."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """Tell prometheus-client a worker is gone, so its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder when this run made it."""
    if _metrics_dir_made:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
