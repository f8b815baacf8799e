"""The dispatch settings, read from the environment by the worker and the batch endpoint."""

import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config import ConfigError, number
from dispatch.windows import Window, parse_window


@dataclass(frozen=True)
class DispatchSettings:
    """How many calls may be in flight, for how long a call counts, and the default hours."""

    max_concurrent_calls: int
    call_max_minutes: float
    calling_timezone: ZoneInfo
    calling_window: Window


def load(environ=os.environ) -> DispatchSettings:
    """Return the settings from ``environ``; a bad value raises ConfigError naming it."""
    cap = number(environ, "MAX_CONCURRENT_CALLS", 5, int)
    minutes = number(environ, "CALL_MAX_MINUTES", 15.0)
    if cap < 1 or minutes <= 0:
        raise ConfigError("MAX_CONCURRENT_CALLS must be at least 1 and CALL_MAX_MINUTES above 0")
    zone = environ.get("CALLING_TIMEZONE") or "UTC"
    try:
        calling_timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"CALLING_TIMEZONE {zone!r} is not an IANA time zone name") from None
    try:
        calling_window = parse_window(environ.get("CALLING_WINDOW") or "08:00-20:00")
    except ValueError as exc:
        raise ConfigError(f"CALLING_WINDOW: {exc}") from None
    return DispatchSettings(cap, minutes, calling_timezone, calling_window)
