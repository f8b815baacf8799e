"""``python -m elevenlabs.simulator`` refuses a port or webhook URL it could not use."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "99999"], "argument --port: must be a port between 1 and 65535: '99999'"),
        (["--port", "0"], "argument --port: must be a port between 1 and 65535: '0'"),
        (["--port", "abc"], "argument --port: must be a port between 1 and 65535: 'abc'"),
        (
            ["--webhook-url", "notaurl"],
            "argument --webhook-url: must be an http:// or https:// URL: 'notaurl'",
        ),
        (
            ["--webhook-url", "ftp://127.0.0.1:8000"],
            "argument --webhook-url: must be an http:// or https:// URL: 'ftp://127.0.0.1:8000'",
        ),
    ],
)
def test_the_simulator_refuses_a_bad_port_or_webhook_url_in_one_line(argv, says):
    # Before the check, a bad port or URL served on: the timeout ends that run.
    refused = subprocess.run(
        [sys.executable, "-m", "elevenlabs.simulator", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].endswith(f"error: {says}")
