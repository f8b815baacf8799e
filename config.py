"""Configuration: read once from the environment; ``create_app(test_config)`` lays tests over it."""

import errno
import math
import os
import socket
from decimal import Decimal

# Without any of these, production would serve and answer every call with 503;
# the embedded database is for development, production names its own.
PRODUCTION_REQUIRED = (
    "API_TOKENS",
    "ELEVENLABS_WEBHOOK_SECRET",
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_AGENT_ID",
    "ELEVENLABS_PHONE_NUMBER_ID",
    "DATABASE_URL",
)


class ConfigError(Exception):
    """The configuration cannot work; the message says what to set."""


def _tokens(raw: str | None) -> list[str]:
    return [token.strip() for token in (raw or "").split(",") if token.strip()]


def number(environ, name: str, default: float, cast=float):
    """Return ``environ[name]`` as ``cast`` makes it, ``default`` when unset or empty."""
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return cast(raw)
    except (ValueError, ArithmeticError):  # Decimal's InvalidOperation is an ArithmeticError
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _price(raw: str) -> Decimal:
    """Return a price in dollars: a positive finite decimal (float would round cents)."""
    price = Decimal(raw)
    if not price.is_finite() or price <= 0:
        raise ValueError(raw)
    return price


def from_env(environ=os.environ) -> dict:
    """Return the settings found in ``environ``, with defaults."""
    return {
        "APP_ENV": environ.get("APP_ENV", "development"),
        "DATABASE_URL": environ.get("DATABASE_URL") or None,
        "DB_POOL_MIN_SIZE": number(environ, "DB_POOL_MIN_SIZE", 2, int),
        "DB_POOL_MAX_SIZE": number(environ, "DB_POOL_MAX_SIZE", 10, int),
        "DB_POOL_TIMEOUT": number(environ, "DB_POOL_TIMEOUT", 5.0),
        "API_TOKENS": _tokens(environ.get("API_TOKENS")),
        "ELEVENLABS_API_KEY": environ.get("ELEVENLABS_API_KEY", ""),
        "ELEVENLABS_AGENT_ID": environ.get("ELEVENLABS_AGENT_ID", ""),
        "ELEVENLABS_PHONE_NUMBER_ID": environ.get("ELEVENLABS_PHONE_NUMBER_ID", ""),
        "ELEVENLABS_BASE_URL": environ.get("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io"),
        "ELEVENLABS_CONNECT_TIMEOUT": number(environ, "ELEVENLABS_CONNECT_TIMEOUT", 5.0),
        "ELEVENLABS_READ_TIMEOUT": number(environ, "ELEVENLABS_READ_TIMEOUT", 20.0),
        "ELEVENLABS_WEBHOOK_SECRET": environ.get("ELEVENLABS_WEBHOOK_SECRET", ""),
        # ElevenLabs prices calls in credits; dollars only from the plan's price of one.
        "ELEVENLABS_USD_PER_CREDIT": number(environ, "ELEVENLABS_USD_PER_CREDIT", None, _price),
        # How far a signature's timestamp may be from our clock, in seconds.
        "WEBHOOK_TOLERANCE_PAST": number(environ, "WEBHOOK_TOLERANCE_PAST", 1800, int),
        "WEBHOOK_TOLERANCE_FUTURE": number(environ, "WEBHOOK_TOLERANCE_FUTURE", 300, int),
        "MAX_CONTENT_LENGTH": number(environ, "MAX_CONTENT_LENGTH", 1024 * 1024, int),
        # /metrics accepts these bearer tokens; unset: the API tokens.
        "METRICS_TOKENS": _tokens(environ.get("METRICS_TOKEN")),
        "LOG_LEVEL": environ.get("LOG_LEVEL", "INFO").upper(),
        "SENTRY_DSN": environ.get("SENTRY_DSN", ""),
        "RELEASE": environ.get("RELEASE", ""),
        "HOST": environ.get("HOST", "127.0.0.1"),
        "PORT": number(environ, "PORT", 8000, int),
    }


def check(config) -> None:
    """Refuse a configuration that cannot run safely, naming what is missing."""
    if config["APP_ENV"] not in ("development", "production"):
        raise ConfigError(f"APP_ENV must be development or production, got {config['APP_ENV']!r}")
    if config["APP_ENV"] == "production":
        missing = [name for name in PRODUCTION_REQUIRED if not config.get(name)]
        if missing:
            raise ConfigError(f"APP_ENV=production needs {', '.join(missing)} set")
    check_numbers(config)


# Seconds: requests refuses a timeout of 0 or less on every call (a 500 and a
# "may have been placed" failed row for a call never placed), and the socket
# layer overflows on huge ones; an hour is more than any wait here needs.
TIMEOUTS = ("ELEVENLABS_CONNECT_TIMEOUT", "ELEVENLABS_READ_TIMEOUT", "DB_POOL_TIMEOUT")
MAX_TIMEOUT = 3600
# (setting, lowest, highest or None): outside, start-up would succeed and then
# every request using the value fail, or the bind raise a traceback (PORT).
INTEGER_RANGES = (
    ("DB_POOL_MIN_SIZE", 0, None),  # 0: a lazy pool, which psycopg_pool takes
    ("DB_POOL_MAX_SIZE", 1, None),
    ("MAX_CONTENT_LENGTH", 1, None),
    ("WEBHOOK_TOLERANCE_PAST", 0, None),
    ("WEBHOOK_TOLERANCE_FUTURE", 0, None),
    ("PORT", 1, 65535),
)


def check_numbers(config) -> None:
    """Refuse, naming the setting, a number that would start and then fail each request."""
    for name in TIMEOUTS:
        value = config[name]
        if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
            raise ConfigError(
                f"{name} must be above 0 and at most {MAX_TIMEOUT} seconds, got {value}"
            )
    for name, low, high in INTEGER_RANGES:
        value = config[name]
        if high is None and value < low:
            raise ConfigError(f"{name} must be at least {low}, got {value}")
        if high is not None and not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    if config["DB_POOL_MAX_SIZE"] < config["DB_POOL_MIN_SIZE"]:
        raise ConfigError(
            f"DB_POOL_MAX_SIZE must be at least DB_POOL_MIN_SIZE ({config['DB_POOL_MIN_SIZE']}), "
            f"got {config['DB_POOL_MAX_SIZE']}"
        )


def check_port_free(host: str, port: int) -> None:
    """Refuse in one line when something already listens on ``host:port``.

    Gunicorn would retry the bind for seconds, and share a SO_REUSEPORT listener
    silently; a probe bound without that option finds any listener.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{host}:{port} is already in use by another server") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
