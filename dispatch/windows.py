"""Calling hours: local time in a driver's IANA time zone, so a window follows DST."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

HH_MM = r"([01][0-9]|2[0-3]):[0-5][0-9]"


@dataclass(frozen=True)
class Window:
    """Local calling hours each day: open from ``start`` up to, not including, ``end``."""

    start: time
    end: time


def parse_time(text: str) -> time:
    """Return ``HH:MM`` as a time; raise ValueError for anything else."""
    if not re.fullmatch(HH_MM, text):
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    return time.fromisoformat(text)


def parse_window(text: str) -> Window:
    """Return ``HH:MM-HH:MM`` (e.g. ``08:00-20:00``) as a Window; raise ValueError if bad."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a window as HH:MM-HH:MM")
    return checked(parse_time(start.strip()), parse_time(end.strip()))


def checked(start: time, end: time) -> Window:
    """Return the window, or raise ValueError when it does not open before it closes."""
    if start >= end:
        raise ValueError("the window must start before it ends (no overnight windows)")
    return Window(start, end)


def is_open(window: Window, zone: ZoneInfo, now: datetime) -> bool:
    """Tell whether ``now`` falls inside the window on the driver's local clock."""
    local = now.astimezone(zone).time()
    return window.start <= local < window.end


def next_opening(window: Window, zone: ZoneInfo, now: datetime) -> datetime:
    """Return the first instant at or after ``now`` when the window is open (UTC)."""
    if is_open(window, zone, now):
        return now
    local = now.astimezone(zone)
    day = local.date() if local.time() < window.start else local.date() + timedelta(days=1)
    # A start that does not exist that day (inside the spring-forward gap, e.g. 02:30) is
    # read with the offset before the change, as zoneinfo does: 02:30 opens at 03:30.
    return datetime.combine(day, window.start, tzinfo=zone).astimezone(UTC)
