"""The calls list: the filters an operator types, the one query they become, and its CSV.

The query is planned afresh for each search (``prepare=False``): a LIKE on an index
needs the pattern's value at planning time, and a generic plan made for one search
would walk the whole table for the next.
"""

import csv
import io
import json
import re
from collections import namedtuple
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta

from psycopg import sql
from psycopg.rows import namedtuple_row

from api.phone_numbers import mask_phone
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
NUMBER = re.compile(r"[0-9]{1,19}")  # ASCII digits only: int() would take full-width ones
# The first line, as csv.writer ends its lines.
HEADER = (
    "call_sid,created_at,driver_id,driver_name,phone_number,status,failure_reason,"
    "duration_secs,call_successful,answers,cost_credits\r\n"
)
# A CSV cell starting as a formula would gets a leading "'": what a driver says on a call
# must never run on an operator's machine.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# A list's rows, and the id the older page starts below (None on the oldest).
Page = namedtuple("Page", "rows older_than")

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

# A row is a named tuple: the call, and what ElevenLabs made of it.
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
    given = {name: filters[name] for name in CONDITIONS if filters.get(name) is not None}
    where = sql.SQL(" AND ").join(sql.SQL(CONDITIONS[name]) for name in given)
    query = sql.SQL(LIST_CALLS).format(
        where=sql.SQL(" WHERE ") + where if given else sql.SQL(""),
        limit=sql.SQL("LIMIT %(limit)s") if limit else sql.SQL(""),
    )
    return query, {**given, "limit": limit}


def latest(conn, filters: dict) -> Page:
    """Return a page of the calls matching the filters, newest first."""
    with conn.cursor(row_factory=namedtuple_row) as cur:
        query, params = list_query(filters, limit=filters["limit"] + 1)
        return paged(cur.execute(query, params, prepare=False).fetchall(), filters["limit"])


def paged(rows: list, limit: int) -> Page:
    """Return ``limit`` rows of one more read: that one tells, without a count(*), if more exist."""
    return Page(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def every(conn, filters: dict, *, batch: int = 1000):
    """Yield every call matching the filters, newest first, a batch in memory at a time."""
    query, params = list_query({**filters, "before_id": None}, limit=None)
    with conn.cursor(row_factory=namedtuple_row) as cur:
        yield from cur.stream(query, params, size=batch)


class Query:
    """A query string's fields, read one by one; every bad one is named in one 400."""

    def __init__(self, args):
        self.args, self.problems = args, {}

    def text(self, name: str) -> str | None:
        return self.args.get(name, "").strip() or None

    def choice(self, name: str, choices, default: str | None = None) -> str | None:
        value = self.text(name) or default
        if value is not None and value not in choices:
            self.problems[name] = f"must be one of {', '.join(choices)}"
        return value

    def number(self, name: str, *, low: int, high: int = BIGINT_MAX) -> int | None:
        raw = self.text(name)
        if raw is not None and not (NUMBER.fullmatch(raw) and low <= int(raw) <= high):
            self.problems[name] = f"must be a whole number from {low} to {high}"
            return None
        return int(raw) if raw else None

    def day(self, name: str, *, days_after: int = 0) -> datetime | None:
        """Return the start of the UTC day named, moved ``days_after`` days on."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            if not DAY.fullmatch(raw):
                raise ValueError
            day = date.fromisoformat(raw) + timedelta(days=days_after)
            return datetime.combine(day, time(), tzinfo=UTC)
        except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
            self.problems[name] = "must be a day as YYYY-MM-DD (UTC)"
            return None

    def page(self) -> dict:
        """Return the page asked for: rows older than the id ``before``, ``limit`` of them."""
        limit = self.number("limit", low=1, high=MAX_PAGE_SIZE)
        return {"before_id": self.number("before", low=1), "limit": limit or PAGE_SIZE}

    def valid(self, filters: dict) -> dict:
        """Return the filters read, or raise the 400 that names every bad one."""
        if not self.problems:
            return filters
        raise ApiError("Some filters are not valid.", code="invalid_filter", details=self.problems)


def parse_filters(args) -> dict:
    """Return the list's filters from the query string; raise a 400 naming each bad one."""
    query = Query(args)
    call_sid = query.text("call_sid")
    if call_sid is not None and not CALL_SID_PATTERN.fullmatch(call_sid):
        query.problems["call_sid"] = "must be a call_sid such as cs_ and 32 hex digits"
    # Digits are a driver id, anything else the start of a name, its LIKE wildcards escaped.
    driver, driver_id, driver_name = query.text("driver") or "", None, None
    if driver.isascii() and driver.isdigit():
        driver_id = query.number("driver", low=0)
    elif len(driver) > 100 or not driver.isprintable():
        query.problems["driver"] = (
            "must be a driver id or the start of a name (up to 100 characters)"
        )
    elif driver:
        driver_name = re.sub(r"([\\%_])", r"\\\1", driver.lower()) + "%"
    phone = PHONE_PUNCTUATION.sub("", args.get("phone", ""))
    if phone and not (phone.isascii() and phone.isdigit() and 3 <= len(phone) <= 15):
        query.problems["phone"] = "must be the last 3 to 15 digits of the number"
    # "to" is a whole day: the list ends where the next one starts.
    since, until = query.day("from"), query.day("to", days_after=1)
    if since and until and until <= since:
        query.problems["to"] = "must not be before from"
    return query.valid(
        {
            "status": query.choice("status", STATUSES),
            "outcome": query.choice("outcome", VERDICTS),
            "driver_id": driver_id,
            "driver_name": driver_name,
            # The number's last digits, reversed: a prefix calls_phone_suffix_idx can use.
            "phone": phone[::-1] + "%" if phone else None,
            "call_sid": call_sid,
            "since": since,
            "until": until,
            **query.page(),
        }
    )


def form_values(args) -> dict:
    """Return the filters as typed, to show them back in the form and carry them to links."""
    names = ("phone", "driver", "call_sid", "from", "to", "status", "outcome")
    return {name: args.get(name, "").strip() for name in names if args.get(name, "").strip()}


def cell(value) -> str:
    """Return a value as a cell a spreadsheet shows rather than evaluates (answers as JSON)."""
    if value is None:
        return ""
    if isinstance(value, dict):  # JSON starts with "{": never a formula
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(rows: Iterable) -> Iterator[str]:
    """Yield the CSV text, the header first, a few hundred lines per chunk sent."""
    buffer = io.StringIO()
    buffer.write(HEADER)
    writer = csv.writer(buffer)
    for call in rows:
        phone = call.phone_number and mask_phone(call.phone_number)
        row = (call.call_sid, call.created_at, call.driver_id, call.driver_name, phone, call.status)
        row += (call.failure_reason, call.call_duration_secs, call.call_successful)
        writer.writerow(map(cell, (*row, call.data_collection, call.cost_credits)))
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
