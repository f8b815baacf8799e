"""Gunicorn settings for production: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``.

Threads rather than processes alone: a call creation waits on ElevenLabs for
up to ELEVENLABS_READ_TIMEOUT seconds, and that wait must not hold a whole worker.
"""

import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 30
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

    try:
        settings = config.from_env()
        config.check(settings)
        if settings["DATABASE_URL"]:
            db.open_pool(settings["DATABASE_URL"], min_size=1, max_size=1, timeout=5).close()
    except (config.ConfigError, db.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    _clear_metrics_dir()


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
