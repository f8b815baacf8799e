"""The worker's settings, read from the environment (the API reads the same ones)."""

import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo

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
        raise ValueError(
            f"MAX_CONCURRENT_CALLS and CALL_MAX_MINUTES must be numbers: {exc}"
        ) from None
    if cap < 1 or minutes <= 0:
        raise ValueError("MAX_CONCURRENT_CALLS must be at least 1 and CALL_MAX_MINUTES above 0")
    return DispatchSettings(
        max_concurrent_calls=cap,
        call_max_minutes=minutes,
        calling_timezone=ZoneInfo(environ.get("CALLING_TIMEZONE") or "UTC"),
        calling_window=parse_window(environ.get("CALLING_WINDOW") or "08:00-20:00"),
    )
