"""``make run`` as the README tells a newcomer: a call placed, talked through and completed.

Each test runs ``serve.py`` (what ``make run`` runs) on a fresh data directory
with no settings at all, so no ElevenLabs account: the simulator answers.
"""

import json
import shlex
import signal
import subprocess
import sys

import psutil
import pytest
import requests
from dev_server import DevServer, postgres_of
from gunicorn_server import ROOT, wait_for


@pytest.fixture
def fresh_data(tmp_path):
    """Return a data directory that does not exist yet; no server left on it after the test."""
    data = tmp_path / "postgres"
    yield data
    leftover = postgres_of(data)
    if leftover:
        leftover.terminate()


def test_the_printed_curl_places_a_call_that_completes_with_its_transcript(fresh_data):
    run = DevServer(fresh_data)
    try:
        curl = run.printed("try: curl ")
        token = run.printed("token:").split()[1]
        lines = run.lines
        # After the migrations and gunicorn's start: where, the console, the token, the curl.
        banner = [lines.index(run.printed(p)) for p in ("serving on", "console:", "token:", "try:")]
        assert lines.index(run.printed("007 call_lookup_indexes: upgrade applied")) < banner[0]
        assert lines.index(run.printed("[", timeout=1)) < banner[0]
        assert banner == list(range(banner[0], banner[0] + 4))
        assert run.printed("console:").split()[1] == f"http://127.0.0.1:{run.port}/ops/calls"
        assert run.printed("no ELEVENLABS_API_KEY: calls go to the ElevenLabs simulator on ")
        assert any(f"Listening at: http://127.0.0.1:{run.port} " in line for line in lines)

        placed = subprocess.run(
            [*shlex.split(curl.removeprefix("try: ")), "-s", "-w", "\n%{http_code}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        body, status = placed.stdout.rsplit("\n", 1)
        assert status == "201"
        call_sid = json.loads(body)["call_sid"]

        def completed():
            url = f"http://127.0.0.1:{run.port}/driver_data/calls/{call_sid}"
            call = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
            return call if call["status"] == "completed" else None

        call = wait_for(completed, "the call completed", timeout=10)
        assert len(call["transcript"]) == 5
    finally:
        assert run.stop() == 0
    assert postgres_of(fresh_data) is None


def test_after_kill_9_the_next_run_starts_and_its_clean_stop_leaves_no_postgres(fresh_data):
    killed = DevServer(fresh_data)
    killed.printed("try: curl ")
    killed.stop(signal.SIGKILL)
    # gunicorn and the simulator die with it; the embedded server is left orphaned.
    wait_for(lambda: not _listening(killed.port), "gunicorn to stop")
    orphan = postgres_of(fresh_data)
    assert orphan is not None

    again = DevServer(fresh_data)
    again.printed("try: curl ")
    assert again.stop() == 0

    assert postgres_of(fresh_data) is None
    # Stopped: gone, or a zombie where this machine's init does not reap it.
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(fresh_data):
    first = DevServer(fresh_data)
    try:
        first.printed("try: curl ")
        second = DevServer(fresh_data, PORT=str(first.port))
        assert second.process.wait(timeout=60) == 1
        second.stop()
        assert second.lines == [
            f"error: 127.0.0.1:{first.port} is already in use by another server"
        ]
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u@h/db?nosuch=1", 'invalid URI query parameter: "nosuch"'),
        (
            "postgresql://u:secret@[::1/db",
            'end of string reached when looking for matching "]" in IPv6 host address'
            ' in URI: "<DATABASE_URL>"',
        ),
    ],
)
def test_a_malformed_database_url_is_one_line_without_its_password(fresh_data, url, problem):
    run = DevServer(fresh_data, DATABASE_URL=url)

    assert run.process.wait(timeout=60) == 1
    run.stop()
    assert run.lines == [f"error: DATABASE_URL is malformed: {problem}"]


def test_operator_commands_find_the_development_database_while_make_run_serves_and_after(
    fresh_data,
):
    run = DevServer(fresh_data)
    try:
        run.printed("try: curl ")
        serving = command("migrations/migrate.py", "status", env=run.env)
        assert serving.returncode == 0, serving.stderr
        assert "007 call_lookup_indexes: applied" in serving.stdout
        assert postgres_of(fresh_data) is not None  # the command left make run's server up
    finally:
        run.stop()

    after = command("-m", "ops", "stuck", env=run.env)
    assert after.returncode == 0, after.stderr
    assert after.stderr.startswith("using the embedded PostgreSQL in ")
    assert postgres_of(fresh_data) is None  # started for the command, stopped after it


def command(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Run an operator command as the README prints it: no DATABASE_URL."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _listening(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except requests.ConnectionError:
        return False
    return True


PRODUCTION = {
    "APP_ENV": "production",
    "API_TOKENS": "prod-token-0123456789",
    "ELEVENLABS_WEBHOOK_SECRET": "wsec_prod_0123456789",
}


def test_production_without_an_elevenlabs_key_refuses_to_start_instead_of_simulating(
    fresh_data, database_url
):
    run = DevServer(fresh_data, DATABASE_URL=database_url, **PRODUCTION)
    assert run.process.wait(timeout=60) == 1
    run._reader.join(timeout=10)
    assert run.lines[-1].startswith("error: APP_ENV=production needs ELEVENLABS_API_KEY")
    assert not any("simulator" in line for line in run.lines)


def test_production_never_starts_the_simulator(fresh_data, database_url):
    run = DevServer(
        fresh_data,
        DATABASE_URL=database_url,
        ELEVENLABS_API_KEY="xi_prod_key",
        ELEVENLABS_AGENT_ID="agent_prod",
        ELEVENLABS_PHONE_NUMBER_ID="phnum_prod",
        ELEVENLABS_BASE_URL="http://127.0.0.1:9",  # nothing listens: no call is placed here
        **PRODUCTION,
    )
    try:
        run.printed("try: curl ")
    finally:
        run.stop()
    assert not any("simulator" in line for line in run.lines)
    # A token the operator set is never printed; the curl line leaves it to the shell.
    assert not any("prod-token-0123456789" in line for line in run.lines)
    assert '"Authorization: Bearer $TOKEN"' in run.printed("try: curl ")
