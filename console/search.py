"""Which calls the console lists: the filters an operator types, and the one query they become.

Every filter is optional; an empty field means "any". Each bad one is named in
one 400. The query is planned afresh for each search (``prepare=False``): a
LIKE on an index needs the pattern's value at planning time, and a generic plan
made for one search would walk the whole table for the next.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from psycopg import sql
from psycopg.rows import class_row

from errors import ApiError
from models import calls
from models.calls import BIGINT_MAX
from models.outcomes import VERDICTS

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATUSES = (calls.INITIATING, calls.INITIATED, calls.FAILED, calls.COMPLETED)
# Every call_sid we make (``cs_…``, ``legacy_<id>``) fits; anything else cannot
# name a call, and refusing it early keeps NUL bytes and megabyte paths off the database.
CALL_SID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# What people type around the digits of a number: +1 (415) 555-0123.
PHONE_PUNCTUATION = re.compile(r"[\s+().-]")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass
class CallRow:
    """A call as the list and its CSV show it: the call, and what ElevenLabs made of it."""

    id: int
    call_sid: str
    driver_id: int | None
    driver_name: str | None
    phone_number: str | None
    conversation_id: str | None
    status: str
    failure_reason: str | None
    created_at: datetime
    call_duration_secs: int | None
    termination_reason: str | None
    call_successful: str | None
    data_collection: dict | None
    cost_credits: int | None


# The conditions a filter adds, each bound by its own name; only those given appear,
# so every search is a plain conjunction the planner matches to one index.
CONDITIONS = {
    # Older than the call given, in the list's order: a row comparison on calls_created_at_idx.
    "before_id": (
        "(c.created_at, c.id) < (SELECT b.created_at, b.id FROM calls b WHERE b.id = %(before_id)s)"
    ),
    "status": "c.status = %(status)s",
    "driver_id": "c.driver_id = %(driver_id)s",
    "driver_name": r"lower(c.driver_name) LIKE %(driver_name)s ESCAPE '\'",
    "phone": "reverse(c.phone_number) LIKE %(phone)s",
    "call_sid": "c.call_sid = %(call_sid)s",
    "since": "c.created_at >= %(since)s",
    "until": "c.created_at < %(until)s",
    "outcome": "o.call_successful = %(outcome)s",
}

LIST_CALLS = """
SELECT c.id, c.call_sid, c.driver_id, c.driver_name, c.phone_number, c.conversation_id,
       c.status, c.failure_reason, c.created_at, c.call_duration_secs, c.termination_reason,
       o.call_successful, o.data_collection, o.cost_credits
  FROM calls c LEFT JOIN call_outcomes o ON o.call_id = c.id
{where}
 ORDER BY c.created_at DESC, c.id DESC
{limit}
"""


def list_query(filters: dict, *, limit: int | None) -> tuple[sql.Composed, dict]:
    """Return the list's SQL and parameters for these filters, newest first."""
    given = {name: value for name, value in filters.items() if name in CONDITIONS}
    given = {name: value for name, value in given.items() if value is not None}
    where = sql.SQL(" AND ").join(sql.SQL(CONDITIONS[name]) for name in given)
    query = sql.SQL(LIST_CALLS).format(
        where=sql.SQL(" WHERE ") + where if given else sql.SQL(""),
        limit=sql.SQL("LIMIT %(limit)s") if limit else sql.SQL(""),
    )
    return query, {**given, "limit": limit}


def latest(conn, filters: dict, *, limit: int) -> list[CallRow]:
    """Return up to ``limit`` calls matching the filters, newest first."""
    query, params = list_query(filters, limit=limit)
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        return cur.execute(query, params, prepare=False).fetchall()


def every(conn, filters: dict, *, batch: int = 1000):
    """Yield every call matching the filters, newest first, a batch in memory at a time."""
    query, params = list_query({**filters, "before_id": None}, limit=None)
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        yield from cur.stream(query, params, size=batch)


def whole_number(args, name: str, *, low: int, high: int, problems: dict) -> int | None:
    """Return the field as an int in [low, high], None when empty; note a bad one in problems."""
    raw = args.get(name, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        problems[name] = f"must be a whole number from {low} to {high}"
        return None
    return int(raw)


def _choice(args, name: str, choices, problems: dict) -> str | None:
    value = args.get(name, "").strip() or None
    if value is not None and value not in choices:
        problems[name] = f"must be one of {', '.join(choices)}"
        return None
    return value


def _day(args, name: str, problems: dict, *, days_after: int = 0) -> datetime | None:
    """Return the start of the day named (UTC), moved ``days_after`` days on."""
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        if not DAY.fullmatch(raw):
            raise ValueError
        day = date.fromisoformat(raw) + timedelta(days=days_after)
        return datetime.combine(day, time(), tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        problems[name] = "must be a day as YYYY-MM-DD (UTC)"
        return None


def _driver(args, problems: dict) -> tuple[int | None, str | None]:
    """Return (driver_id, name LIKE pattern): digits are an id, anything else a name's start."""
    raw = args.get("driver", "").strip()
    if raw.isascii() and raw.isdigit():
        return whole_number(args, "driver", low=0, high=BIGINT_MAX, problems=problems), None
    if not raw:
        return None, None
    if len(raw) > 100 or not raw.isprintable():
        problems["driver"] = "must be a driver id or the start of a name (up to 100 characters)"
        return None, None
    escaped = raw.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    return None, escaped + "%"


def _phone(args, problems: dict) -> str | None:
    """Return the reversed-suffix LIKE pattern of the number's last digits."""
    digits = PHONE_PUNCTUATION.sub("", args.get("phone", ""))
    if not digits:
        return None
    if not (digits.isascii() and digits.isdigit() and 3 <= len(digits) <= 15):
        problems["phone"] = "must be the last 3 to 15 digits of the number"
        return None
    return digits[::-1] + "%"


def parse_filters(args) -> dict:
    """Return the list's filters from the query string; raise a 400 naming each bad one."""
    problems: dict[str, str] = {}
    call_sid = args.get("call_sid", "").strip() or None
    if call_sid is not None and not CALL_SID_PATTERN.fullmatch(call_sid):
        problems["call_sid"] = "must be a call_sid such as cs_ and 32 hex digits"
    driver_id, driver_name = _driver(args, problems)
    # "to" is a whole day: the list ends where the next one starts.
    since, until = _day(args, "from", problems), _day(args, "to", problems, days_after=1)
    if since and until and until <= since:
        problems["to"] = "must not be before from"
    filters = {
        "status": _choice(args, "status", STATUSES, problems),
        "outcome": _choice(args, "outcome", VERDICTS, problems),
        "driver_id": driver_id,
        "driver_name": driver_name,
        "phone": _phone(args, problems),
        "call_sid": call_sid,
        "since": since,
        "until": until,
        "before_id": whole_number(args, "before", low=1, high=BIGINT_MAX, problems=problems),
        "limit": whole_number(args, "limit", low=1, high=MAX_PAGE_SIZE, problems=problems)
        or PAGE_SIZE,
    }
    if problems:
        raise ApiError("Some filters are not valid.", code="invalid_filter", details=problems)
    return filters


def form_values(args) -> dict:
    """Return the filters as typed, to show them back in the form and carry them to links."""
    names = ("phone", "driver", "call_sid", "from", "to", "status", "outcome")
    return {name: args.get(name, "").strip() for name in names if args.get(name, "").strip()}
