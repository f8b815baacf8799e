"""The app factory, its configuration, and start-up failures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
import db
from app import create_app

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nowhere"


def test_factory_honours_test_config(app_config):
    app = create_app({**app_config, "WEBHOOK_TOLERANCE_PAST": 60, "API_TOKENS": ["a", "b"]})
    try:
        assert app.config["TESTING"] is True
        assert app.config["WEBHOOK_TOLERANCE_PAST"] == 60
        assert app.config["API_TOKENS"] == ["a", "b"]
    finally:
        app.extensions["db_pool"].close()


def test_settings_come_from_the_environment():
    settings = config.from_env(
        {"API_TOKENS": "one, two,,", "PORT": "9001", "APP_ENV": "production"}
    )
    assert settings["API_TOKENS"] == ["one", "two"]
    assert settings["PORT"] == 9001
    assert settings["ELEVENLABS_BASE_URL"] == "https://api.elevenlabs.io"


def test_a_setting_that_is_not_a_number_is_named():
    with pytest.raises(config.ConfigError, match="PORT must be a number"):
        config.from_env({"PORT": "eighty"})


def test_production_refuses_to_start_without_its_secrets_and_names_them(database_url):
    with pytest.raises(config.ConfigError) as refused:
        create_app(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "API_TOKENS": [],
                "ELEVENLABS_WEBHOOK_SECRET": "",
            }
        )
    assert "API_TOKENS" in str(refused.value)
    assert "ELEVENLABS_WEBHOOK_SECRET" in str(refused.value)


ELEVENLABS_SETTINGS = {
    "ELEVENLABS_API_KEY": "xi_key",
    "ELEVENLABS_AGENT_ID": "agent_1",
    "ELEVENLABS_PHONE_NUMBER_ID": "phnum_1",
}


def test_production_names_the_one_secret_missing(database_url):
    with pytest.raises(config.ConfigError) as refused:
        create_app(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "API_TOKENS": ["t"],
                "ELEVENLABS_WEBHOOK_SECRET": "",
                **ELEVENLABS_SETTINGS,
            }
        )
    assert str(refused.value) == "APP_ENV=production needs ELEVENLABS_WEBHOOK_SECRET set"


def test_production_refuses_to_start_without_the_elevenlabs_settings_and_names_them(
    database_url,
):
    with pytest.raises(config.ConfigError) as refused:
        create_app(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "API_TOKENS": ["t"],
                "ELEVENLABS_WEBHOOK_SECRET": "s",
                "ELEVENLABS_API_KEY": "",
                "ELEVENLABS_AGENT_ID": "",
                "ELEVENLABS_PHONE_NUMBER_ID": "",
            }
        )
    assert str(refused.value) == (
        "APP_ENV=production needs ELEVENLABS_API_KEY, ELEVENLABS_AGENT_ID, "
        "ELEVENLABS_PHONE_NUMBER_ID set"
    )


def test_production_starts_with_its_secrets(database_url):
    app = create_app(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "API_TOKENS": ["t"],
            "ELEVENLABS_WEBHOOK_SECRET": "s",
            **ELEVENLABS_SETTINGS,
        }
    )
    app.extensions["db_pool"].close()


def test_a_malformed_database_url_fails_in_the_factory_in_one_line_naming_it():
    with pytest.raises(db.DatabaseUnavailable) as refused:
        create_app({"DATABASE_URL": "postgresql://dana smith@db/calls", "DB_POOL_TIMEOUT": 30})
    assert str(refused.value).startswith("DATABASE_URL is malformed: ")
    assert "\n" not in str(refused.value)


def test_unreachable_database_fails_in_the_factory_with_a_clear_reason():
    with pytest.raises(db.DatabaseUnavailable, match=r"cannot connect to the database: .*refused"):
        create_app({"DATABASE_URL": UNREACHABLE, "DB_POOL_TIMEOUT": 1})


def test_make_run_with_an_unreachable_database_exits_with_one_clear_line():
    result = subprocess.run(
        [sys.executable, "serve.py"],
        env={**os.environ, "DATABASE_URL": UNREACHABLE},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot connect to the database")
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_bad_dispatch_setting_refuses_start_up_naming_it(app_config, monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_CALLS", "five")
    with pytest.raises(config.ConfigError, match="MAX_CONCURRENT_CALLS"):
        create_app(app_config)
