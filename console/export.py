"""The calls list as CSV: the columns the list shows, one call a line, streamed as it is read.

Cells a spreadsheet would run as a formula (a driver's answer or name starting
with ``=``, ``+``, ``-``, ``@``) get a leading ``'``: what a driver says on a
call must never become a formula on an operator's machine.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator

from api.phone_numbers import mask_phone
from console.search import CallRow

HEADER = (
    "call_sid",
    "created_at",
    "driver_id",
    "driver_name",
    "phone_number",
    "status",
    "failure_reason",
    "duration_secs",
    "call_successful",
    "answers",
    "cost_credits",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value) -> str:
    """Return a cell's text: nothing for None, ISO 8601 for times, JSON for answers."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def defused(text: str) -> str:
    """Return the text so that a spreadsheet shows it rather than evaluates it."""
    return "'" + text if text.startswith(FORMULA_START) else text


def cells(call: CallRow) -> list[str]:
    """Return one call's cells, in HEADER's order."""
    values = (
        call.call_sid,
        call.created_at,
        call.driver_id,
        call.driver_name,
        call.phone_number and mask_phone(call.phone_number),
        call.status,
        call.failure_reason,
        call.call_duration_secs,
        call.call_successful,
        call.data_collection,
        call.cost_credits,
    )
    return [defused(as_text(value)) for value in values]


def csv_lines(calls: Iterable[CallRow]) -> Iterator[str]:
    """Yield the CSV text, the header first, a line per call."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for call in calls:
        writer.writerow(cells(call))
        if buffer.tell() > 64 * 1024:  # a few hundred lines per chunk sent
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
