"""Gunicorn settings for production: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``."""

import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Threads: a call creation waits on ElevenLabs for up to ELEVENLABS_READ_TIMEOUT
# and must not hold a whole worker; an idle or slow client waits on the poller.
worker_class = "serving.worker.ParkingWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
# Seconds a kept-alive connection may wait for its next request, and a new one
# may take to send its request head (gunicorn's default; the proxy sends at once).
keepalive = 2
# One listening socket shared by the workers: with one per worker, a reload
# reset the connections queued on the old ones (README, "Production recipe").
reuse_port = False
graceful_timeout = 30
# gunicorn's control socket is unused, and its default path is one per host:
# a second server on the machine would take over the first one's.
control_socket_disable = True
accesslog = None  # the app logs its requests itself, as JSON lines

# Every worker writes its metrics to files here and /metrics sums them
# (prometheus-client's multiprocess mode). It must be set before a worker
# imports the app, which is why it is decided here, in the master.
_metrics_dir_made = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_made:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="call-sid-metrics-")


def on_starting(server):
    """Refuse to start, in one line, on a configuration, database or port that cannot work."""
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
        for address in server.cfg.address:
            if isinstance(address, tuple):  # not a unix socket
                config.check_port_free(*address[:2])
    except (config.ConfigError, db.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        pool_log.setLevel(logging.NOTSET)
    # A previous run's metric files would be summed into this one's.
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
