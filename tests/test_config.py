"""Start-up refuses numbers that would start cleanly and then fail every request."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from app import create_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ELEVENLABS_READ_TIMEOUT": "-1"}, "ELEVENLABS_READ_TIMEOUT"),
        ({"ELEVENLABS_READ_TIMEOUT": "0"}, "ELEVENLABS_READ_TIMEOUT"),
        ({"ELEVENLABS_CONNECT_TIMEOUT": "0"}, "ELEVENLABS_CONNECT_TIMEOUT"),
        ({"ELEVENLABS_CONNECT_TIMEOUT": "nan"}, "ELEVENLABS_CONNECT_TIMEOUT"),
        ({"ELEVENLABS_READ_TIMEOUT": "inf"}, "ELEVENLABS_READ_TIMEOUT"),
        ({"ELEVENLABS_READ_TIMEOUT": "1e300"}, "ELEVENLABS_READ_TIMEOUT"),
        ({"DB_POOL_TIMEOUT": "-5"}, "DB_POOL_TIMEOUT"),
        ({"DB_POOL_MIN_SIZE": "-1"}, "DB_POOL_MIN_SIZE"),
        ({"DB_POOL_MAX_SIZE": "0", "DB_POOL_MIN_SIZE": "0"}, "DB_POOL_MAX_SIZE"),
        ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "4"}, "DB_POOL_MAX_SIZE"),
        ({"MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH"),
        ({"WEBHOOK_TOLERANCE_PAST": "-1"}, "WEBHOOK_TOLERANCE_PAST"),
        ({"WEBHOOK_TOLERANCE_FUTURE": "-1"}, "WEBHOOK_TOLERANCE_FUTURE"),
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "99999"}, "PORT"),
    ],
)
def test_an_out_of_range_number_refuses_start_up_naming_the_setting(environ, named):
    with pytest.raises(config.ConfigError) as refused:
        config.check(config.from_env(environ))
    message = str(refused.value)
    assert message.startswith(f"{named} must be"), message
    assert "\n" not in message


def test_the_defaults_and_the_edges_of_each_range_start():
    config.check(config.from_env({}))
    config.check(
        config.from_env(
            {
                "ELEVENLABS_CONNECT_TIMEOUT": "0.1",
                "ELEVENLABS_READ_TIMEOUT": "3600",
                "DB_POOL_MIN_SIZE": "1",
                "DB_POOL_MAX_SIZE": "1",
                "MAX_CONTENT_LENGTH": "1",
                "WEBHOOK_TOLERANCE_PAST": "0",
                "WEBHOOK_TOLERANCE_FUTURE": "0",
                "PORT": "65535",
            }
        )
    )


def test_make_run_with_port_99999_exits_with_one_line_not_a_traceback():
    result = subprocess.run(
        [sys.executable, "serve.py"],
        env={**os.environ, "PORT": "99999"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr == "error: PORT must be between 1 and 65535, got 99999\n"


def test_a_negative_elevenlabs_timeout_refuses_the_app_instead_of_failing_each_call(app_config):
    with pytest.raises(config.ConfigError, match=r"^ELEVENLABS_READ_TIMEOUT must be"):
        create_app({**app_config, "ELEVENLABS_READ_TIMEOUT": -1.0})
