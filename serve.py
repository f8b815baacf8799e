"""``make run``: the embedded database if no DATABASE_URL, migrations applied, then gunicorn.

Stops cleanly on Ctrl-C or SIGTERM: gunicorn first, then the embedded server.
"""

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import config
from migrations.kit import MigrationError, Run
from migrations.migrate import move

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Prepare the database and serve until told to stop."""
    env = dict(os.environ)
    settings = config.from_env(env)
    config.check(settings)

    if not settings["DATABASE_URL"]:
        import embedded_db

        server = embedded_db.start()  # stopped at exit; data kept in .data/postgres
        env["DATABASE_URL"] = embedded_db.url(server)
        data_dir = embedded_db.DEFAULT_DATA_DIR.relative_to(HERE)
        print(f"embedded PostgreSQL running, data in {data_dir}/")

    move(env["DATABASE_URL"], "up", None, Run())

    if not settings["API_TOKENS"] and settings["APP_ENV"] == "development":
        token = secrets.token_urlsafe(24)
        env["API_TOKENS"] = token
        print(f"API_TOKENS not set; this run accepts the token {token}")
    base = f"http://{settings['HOST']}:{settings['PORT']}"
    token = env.get("API_TOKENS", "").split(",")[0] or "<token>"
    print(f"serving on {base}  (health: {base}/healthz, metrics: {base}/metrics with the token)")
    print(
        "try: curl -X POST "
        + shlex.quote(f"{base}/driver_data/call-elevenlabs")
        + " -H "
        + shlex.quote(f"Authorization: Bearer {token}")
        + " -H 'Content-Type: application/json'"
        + ' -d \'{"driver_id": 42, "phone_number": "+14155550123"}\''
    )
    sys.stdout.flush()

    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(HERE / "gunicorn.conf.py"),
        "app:create_app()",
    ]
    # The workers' metric files: fresh for this run, gone after it.
    metrics_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="call-sid-metrics-")
    child = subprocess.Popen(gunicorn, cwd=HERE, env=env)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached gunicorn too; wait for it to finish
        return child.wait()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def exit_on_startup_error(start):
    """Run ``start``; a configuration or database problem exits with one line."""
    import db

    try:
        return start()
    except (config.ConfigError, db.DatabaseUnavailable, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    raise SystemExit(exit_on_startup_error(main))
