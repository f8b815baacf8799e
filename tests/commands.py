"""Run the project's command-line tools as the operator does: a subprocess, DATABASE_URL set."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, database_url: str | None) -> subprocess.CompletedProcess:
    """Run ``python -m module args``; no DATABASE_URL at all when ``database_url`` is None."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
