"""The dispatch settings, read from the environment by the worker and the batch endpoint."""

import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.windows import Window, parse_window


@dataclass(frozen=True)
class DispatchSettings:
    """How many calls may be in flight, for how long a call counts, and the default hours."""

    max_concurrent_calls: int
    call_max_minutes: float
    calling_timezone: ZoneInfo
    calling_window: Window


def load(environ=os.environ) -> DispatchSettings:
    """Return the settings from ``environ``; a bad value raises ValueError naming it."""
    try:
        cap = int(environ.get("MAX_CONCURRENT_CALLS") or 5)
        minutes = float(environ.get("CALL_MAX_MINUTES") or 15)
    except ValueError as exc:
        raise ValueError(f"MAX_CONCURRENT_CALLS and CALL_MAX_MINUTES are numbers: {exc}") from None
    if cap < 1 or minutes <= 0:
        raise ValueError("MAX_CONCURRENT_CALLS must be at least 1 and CALL_MAX_MINUTES above 0")
    zone = environ.get("CALLING_TIMEZONE") or "UTC"
    try:
        calling_timezone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"CALLING_TIMEZONE {zone!r} is not an IANA time zone name") from None
    try:
        calling_window = parse_window(environ.get("CALLING_WINDOW") or "08:00-20:00")
    except ValueError as exc:
        raise ValueError(f"CALLING_WINDOW: {exc}") from None
    return DispatchSettings(cap, minutes, calling_timezone, calling_window)
