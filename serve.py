"""``make run``: the embedded database if no DATABASE_URL, migrations applied, then gunicorn.

Beside it a dispatch worker and (in development without ELEVENLABS_API_KEY) the
ElevenLabs simulator; all stop on Ctrl-C or SIGTERM, or with this process.
"""

import ctypes
import ipaddress
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

import config
import db
from migrations.kit import MigrationError, Run
from migrations.migrate import move

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Prepare the database and serve until told to stop."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # the same clean stop as Ctrl-C
    env = dict(os.environ)
    settings = config.from_env(env)
    config.check(settings)
    if settings["DATABASE_URL"]:
        db.check_url(settings["DATABASE_URL"])
    host, port = settings["HOST"], settings["PORT"]
    config.check_port_free(host, port)
    prepare_database(env)
    development = settings["APP_ENV"] == "development"
    made_up_token = None
    if not settings["API_TOKENS"] and development:
        made_up_token = env["API_TOKENS"] = secrets.token_urlsafe(24)
    try:  # seen from this machine, an any-address HOST is loopback
        local_host = "127.0.0.1" if ipaddress.ip_address(host).is_unspecified else host
    except ValueError:  # a host name
        local_host = host
    bracketed = f"[{local_host}]" if ":" in local_host else local_host  # an IPv6 literal
    local = f"http://{bracketed}:{port}"
    children = []
    try:
        if not settings["ELEVENLABS_API_KEY"] and development:
            children.append(start_simulator(env, settings, local))
        children.append(_spawn([sys.executable, "-m", "dispatch", "worker"], env))
        gunicorn = _spawn(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"], env
        )
        children.append(gunicorn)
        if wait_until_serving(gunicorn, local):
            print_banner(f"http://{host}:{port}", made_up_token)
        gunicorn.wait()
    except KeyboardInterrupt:  # Ctrl-C (which reached the children too) or SIGTERM
        pass
    finally:
        status = stop(children)
    return status


def prepare_database(env: dict) -> None:
    """Start the embedded server when no DATABASE_URL names one, then apply pending migrations."""
    if not env.get("DATABASE_URL"):
        import embedded_db

        server = embedded_db.start()  # stopped at exit, unless another process still uses it
        env["DATABASE_URL"] = embedded_db.url(server)
        print(f"embedded PostgreSQL running, data in {embedded_db.shown(server.pgdata)}/")
    move(env["DATABASE_URL"], "up", None, Run())


def start_simulator(env: dict, settings: dict, service_url: str) -> subprocess.Popen:
    """Start the ElevenLabs simulator and point the service at it with made-up credentials."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env["ELEVENLABS_API_KEY"] = "sk_simulator_" + secrets.token_hex(8)
    env["ELEVENLABS_BASE_URL"] = f"http://127.0.0.1:{port}"
    env["ELEVENLABS_AGENT_ID"] = settings["ELEVENLABS_AGENT_ID"] or "agent_simulator"
    env["ELEVENLABS_PHONE_NUMBER_ID"] = settings["ELEVENLABS_PHONE_NUMBER_ID"] or "phnum_simulator"
    # The simulator signs with the service's secret, so signatures are checked as in production.
    secret = settings["ELEVENLABS_WEBHOOK_SECRET"] or secrets.token_hex(16)
    env["ELEVENLABS_WEBHOOK_SECRET"] = secret
    command = [
        *(sys.executable, "-m", "elevenlabs.simulator", "--port", str(port)),
        *("--webhook-url", service_url),
        *("--hang-seconds", str(settings["ELEVENLABS_READ_TIMEOUT"] + 5)),
    ]
    child = _spawn(command, env, stdout=subprocess.DEVNULL)
    print(
        "no ELEVENLABS_API_KEY: calls go to the ElevenLabs simulator on "
        f"{env['ELEVENLABS_BASE_URL']} (the number's last digit picks the outcome:"
        " 0 answered, 1 busy, 2 no answer, 3 no webhook, 4 refused, 5 over the limit, 6 hangs)"
    )
    return child


def _spawn(command: list[str], env: dict, **kwargs) -> subprocess.Popen:
    """Start a child that Linux stops (SIGTERM) if this process dies without stopping it."""
    sys.stdout.flush()
    # preexec_fn is unsafe only with threads running, and serve.py starts none.
    return subprocess.Popen(command, cwd=HERE, env=env, preexec_fn=_die_with_parent, **kwargs)


def _die_with_parent() -> None:
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def wait_until_serving(gunicorn: subprocess.Popen, service_url: str) -> bool:
    """Wait, with no deadline, until ``/healthz`` answers 200; False when gunicorn exited first."""
    while gunicorn.poll() is None:
        try:
            if requests.get(service_url + "/healthz", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


def print_banner(base: str, made_up_token: str | None) -> None:
    """Print where the service is and a ready ``curl`` line, last, after all start-up output."""
    print(f"serving on {base}  (health: {base}/healthz, metrics: {base}/metrics with the token)")
    print(f"console:   {base}/ops/calls  (any user name, the token as password)")
    if made_up_token:
        print(f"token:     {made_up_token}  (made up for this run: API_TOKENS is not set)")
    else:
        print("token:     one of your API_TOKENS (export TOKEN=… for the line below)")
    # A token the operator configured is never printed: the shell fills it in.
    auth = "Authorization: Bearer "
    header = shlex.quote(auth + made_up_token) if made_up_token else f'"{auth}$TOKEN"'
    url = shlex.quote(f"{base}/driver_data/call-elevenlabs")
    print(
        f"try: curl -X POST {url} -H {header} -H 'Content-Type: application/json'"
        """ -d '{"driver_id": 42, "phone_number": "+14155550120"}'""",
        flush=True,
    )


def stop(children: list[subprocess.Popen]) -> int:
    """Stop every child still running; return the exit status of the last (gunicorn)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=40)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: no politeness
            child.kill()
            child.wait()
    return children[-1].returncode if children else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (config.ConfigError, db.DatabaseUnavailable, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # stopped during start-up: the embedded server stops at exit
        raise SystemExit(130) from None
