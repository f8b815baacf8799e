"""How soon the service answers again after a database outage, and how fast it says it is down.

Runs the app under gunicorn (its production config) on a throwaway embedded
PostgreSQL. For each outage length, while a client asks for a call every 0.1 s,
PostgreSQL is stopped (``pg_ctl stop -m fast``: every connection cut), left down,
then started again; it prints the seconds from PostgreSQL accepting connections
(``pg_ctl start -w`` returned) to the first 200 that needed the database, and
the slowest ``/healthz`` while it was down.

    .venv/bin/python bench/db_recovery.py [--outages 5,15,35]
"""

import argparse
import getpass
import http.client
import subprocess
import time
from pathlib import Path

import psycopg
from harness import running_app, throwaway_database

import embedded_db

TOKEN = "bench-token-0123456789"  # noqa: S105  (a throwaway server's token)
CALL_SID = "cs_0123456789abcdef0123456789abcdef"


def get(port: int, path: str) -> tuple[int, float]:
    """Return (status, seconds) of one GET, status 0 when no answer came."""
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        status = connection.getresponse().status
    except OSError:
        status = 0
    return status, time.monotonic() - started


def pg_ctl(data: Path, *args: str) -> None:
    """Run the wheel's pg_ctl on the throwaway server as it was started."""
    socket_options = ["-o", '-h ""', "-o", f"-k {data}"]
    command = [str(embedded_db.program("pg_ctl")), "-D", str(data), "-w", *socket_options, *args]
    # Run as root, the wheel runs PostgreSQL as a user of its own; pg_ctl must be that user.
    owner = data.owner()
    if owner != getpass.getuser():
        command = ["runuser", "-u", owner, "--", *command]
    subprocess.run(command, check=True, capture_output=True)


def outage(port: int, data: Path, seconds: float) -> tuple[float, float]:
    """Stop PostgreSQL for ``seconds``; return (seconds to the first 200, slowest /healthz)."""
    pg_ctl(data, "stop", "-m", "fast")
    down_until, slowest_health = time.monotonic() + seconds, 0.0
    while time.monotonic() < down_until:
        get(port, f"/driver_data/calls/{CALL_SID}")
        slowest_health = max(slowest_health, get(port, "/healthz")[1])
        time.sleep(0.1)
    pg_ctl(data, "start", "-l", str(data / "log"))
    back = time.monotonic()
    while get(port, f"/driver_data/calls/{CALL_SID}")[0] != 200:
        time.sleep(0.1)
    return time.monotonic() - back, slowest_health


def main() -> None:
    """Print outage length → seconds to the first 200, for each outage asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", default="5,15,35", help="seconds down, comma-separated")
    outages = [float(s) for s in parser.parse_args().outages.split(",")]
    with throwaway_database() as (url, _postmaster):
        data = Path(psycopg.connect(url).execute("SHOW data_directory").fetchone()[0])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO calls (call_sid, driver_id, status) VALUES (%s, 1, 'initiated')",
                (CALL_SID,),
            )
        settings = {
            "APP_ENV": "production",
            "DATABASE_URL": url,
            "API_TOKENS": TOKEN,
            "ELEVENLABS_WEBHOOK_SECRET": "bench-secret",
            "ELEVENLABS_API_KEY": "bench-key",
            "ELEVENLABS_AGENT_ID": "agent_bench",
            "ELEVENLABS_PHONE_NUMBER_ID": "phnum_bench",
            "WEB_CONCURRENCY": "2",
        }
        with running_app(settings) as (_server, port):
            print("outage s   first 200 after s   slowest /healthz while down s")
            for seconds in outages:
                recovered, health = outage(port, data, seconds)
                print(f"{seconds:8.0f}   {recovered:17.2f}   {health:29.2f}")


if __name__ == "__main__":
    main()
