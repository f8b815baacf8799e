"""``make run``: the embedded database if no DATABASE_URL, migrations applied, then gunicorn.

Beside gunicorn runs one dispatch worker (batches, redial, reconciliation). In
development without ``ELEVENLABS_API_KEY`` calls go to the ElevenLabs
simulator, which plays each call back to this service. The banner is printed
once the service answers. Ctrl-C or SIGTERM stops gunicorn, the worker and the
simulator, then the embedded server; if this process is killed outright, the kernel stops
its children and the next run takes over the embedded server.
"""

import ctypes
import errno
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests
from psycopg.conninfo import conninfo_to_dict

import config
from errors import first_line
from migrations.kit import MigrationError, Run
from migrations.migrate import move

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Prepare the database and serve until told to stop."""
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    settings = config.from_env(env)
    config.check(settings)
    check_database_url(settings["DATABASE_URL"])
    check_port_free(settings["HOST"], settings["PORT"])
    prepare_database(env)
    development = settings["APP_ENV"] == "development"
    made_up_token = None
    if not settings["API_TOKENS"] and development:
        made_up_token = env["API_TOKENS"] = secrets.token_urlsafe(24)
    base = f"http://{settings['HOST']}:{settings['PORT']}"
    run_dir = Path(tempfile.mkdtemp(prefix="call-sid-run-"))
    children = []
    try:
        if not settings["ELEVENLABS_API_KEY"] and development:
            children.append(start_simulator(env, settings, local(settings)))
        children.append(_spawn([sys.executable, "-m", "dispatch", "worker"], env))
        gunicorn = start_gunicorn(env, run_dir)
        children.append(gunicorn)
        if wait_until_serving(gunicorn, local(settings)):
            print_banner(base, made_up_token)
        return gunicorn.wait()
    except KeyboardInterrupt:  # Ctrl-C (which reached the children too) or SIGTERM
        return stop(children)
    finally:
        stop(children)
        shutil.rmtree(run_dir, ignore_errors=True)


def prepare_database(env: dict) -> None:
    """Start the embedded server when no DATABASE_URL names one, then apply pending migrations."""
    if not env.get("DATABASE_URL"):
        import embedded_db

        server = embedded_db.start()  # stopped at exit, unless another process still uses it
        env["DATABASE_URL"] = embedded_db.url(server)
        print(f"embedded PostgreSQL running, data in {embedded_db.shown(server.pgdata)}/")
    move(env["DATABASE_URL"], "up", None, Run())


def local(settings: dict) -> str:
    """Return the service's URL as seen from this machine (any-address HOST: loopback)."""
    host = settings["HOST"]
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        unspecified = False
    return f"http://{'127.0.0.1' if unspecified else host}:{settings['PORT']}"


def _interrupt(*_):
    """Turn SIGTERM into the same clean stop as Ctrl-C."""
    raise KeyboardInterrupt


def check_database_url(url: str | None) -> None:
    """Refuse a malformed ``DATABASE_URL`` in one line, before anything starts."""
    if url:
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            # libpq may quote the whole URL, password included: not on the screen.
            reason = first_line(exc).replace(url, "<DATABASE_URL>")
            raise config.ConfigError(f"DATABASE_URL is malformed: {reason}") from None


def check_port_free(host: str, port: int) -> None:
    """Refuse in one line when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise config.ConfigError(
                    f"cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            raise config.ConfigError(f"{host}:{port} is already in use by another server") from None


def start_simulator(env: dict, settings: dict, service_url: str) -> subprocess.Popen:
    """Start the ElevenLabs simulator and point the service at it with made-up credentials."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env["ELEVENLABS_API_KEY"] = "sk_simulator_" + secrets.token_hex(8)
    env["ELEVENLABS_BASE_URL"] = f"http://127.0.0.1:{port}"
    env["ELEVENLABS_AGENT_ID"] = settings["ELEVENLABS_AGENT_ID"] or "agent_simulator"
    env["ELEVENLABS_PHONE_NUMBER_ID"] = settings["ELEVENLABS_PHONE_NUMBER_ID"] or "phnum_simulator"
    # The simulator signs with the service's secret, so the service checks signatures as
    # in production; one is made up when none is set.
    env["ELEVENLABS_WEBHOOK_SECRET"] = settings["ELEVENLABS_WEBHOOK_SECRET"] or secrets.token_hex(
        16
    )
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


def start_gunicorn(env: dict, run_dir: Path) -> subprocess.Popen:
    """Start gunicorn with this run's own metrics folder."""
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(run_dir / "metrics"))
    command = [
        *(sys.executable, "-m", "gunicorn", "-c", str(HERE / "gunicorn.conf.py")),
        "app:create_app()",
    ]
    return _spawn(command, env)


def _spawn(command: list[str], env: dict, **kwargs) -> subprocess.Popen:
    """Start a child that the kernel stops (SIGTERM) if this process dies without stopping it."""
    sys.stdout.flush()
    # preexec_fn is unsafe only with threads running, and serve.py starts none.
    return subprocess.Popen(command, cwd=HERE, env=env, preexec_fn=_die_with_parent, **kwargs)


def _die_with_parent() -> None:
    """In the child: ask Linux for SIGTERM when the parent dies (``kill -9`` of ``make run``)."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def wait_until_serving(gunicorn: subprocess.Popen, service_url: str) -> bool:
    """Wait until ``/healthz`` answers 200; False when gunicorn exited first (it said why).

    No deadline: a banner printed before the service answers would not be true.
    """
    url = service_url + "/healthz"
    while gunicorn.poll() is None:
        try:
            if requests.get(url, timeout=1).status_code == 200:
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
    codes = []
    for child in children:
        try:
            codes.append(child.wait(timeout=40))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            child.kill()
            codes.append(child.wait())
    return codes[-1] if codes else 1


def exit_on_startup_error(start):
    """Run ``start``; a configuration or database problem exits with one line."""
    import db

    try:
        return start()
    except (config.ConfigError, db.DatabaseUnavailable, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # stopped during start-up: the embedded server stops at exit
        raise SystemExit(130) from None


if __name__ == "__main__":
    raise SystemExit(exit_on_startup_error(main))
