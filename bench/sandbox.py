"""How long a newcomer waits: ``make run`` to its banner, then the printed curl to a completed call.

``python bench/sandbox.py [--runs 3]`` starts ``serve.py`` as ``make run`` does,
with no settings, on a fresh data directory (the first run: initdb and every
migration) and again on the same one (later runs), places the call the banner's
curl line places, and times it until ``GET /driver_data/calls/<call_sid>`` says
``completed``. The simulator's calls last ``SIMULATOR_CALL_SECONDS`` (default 8).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from harness import ROOT, free_port

UNSET = ("DATABASE_URL", "API_TOKENS", "ELEVENLABS_API_KEY", "ELEVENLABS_WEBHOOK_SECRET")


def one_run(data: Path) -> tuple[float, float]:
    """Return (seconds to the banner's curl line, seconds from the curl to a completed call)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(EMBEDDED_PGDATA=str(data), PORT=str(port))
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = iter(serve.stdout)
        token = next(line.split()[1] for line in lines if line.startswith("token:"))
        curl = next(line for line in lines if line.startswith("try: curl "))
        to_banner = time.monotonic() - started
        placed_at = time.monotonic()
        answer = subprocess.run(
            [*shlex.split(curl.removeprefix("try: ")), "-s"], capture_output=True, check=True
        )
        call_sid = json.loads(answer.stdout)["call_sid"]
        url = f"http://127.0.0.1:{port}/driver_data/calls/{call_sid}"
        auth = {"Authorization": f"Bearer {token}"}
        while requests.get(url, headers=auth, timeout=5).json()["status"] != "completed":
            time.sleep(0.1)
        return to_banner, time.monotonic() - placed_at
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        serve.stdout.close()


def main() -> None:
    """Print each run's figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as folder:
        data = Path(folder) / "postgres"
        print("run  data       to banner  curl to completed")
        for n in range(args.runs):
            to_banner, to_completed = one_run(data)
            kind = "fresh" if n == 0 else "existing"
            print(f"{n + 1:>3}  {kind:<9}  {to_banner:>8.1f}s  {to_completed:>16.1f}s")


if __name__ == "__main__":
    main()
