"""Gunicorn settings for production: ``gunicorn -c gunicorn.conf.py 'app:create_app()'``.

Threads rather than processes alone: a call creation waits on ElevenLabs for
up to ELEVENLABS_READ_TIMEOUT seconds, and that wait must not hold a whole worker.
"""

import multiprocessing
import os
import sys

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 30
# Requests are logged by the app itself, as JSON lines.
accesslog = None


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
