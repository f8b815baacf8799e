"""The calls list as CSV: the columns the list shows, one call a line, streamed as it is read.

A cell starting as a formula would (``=``, ``+``, ``-``, ``@``) gets a leading ``'``:
what a driver says on a call must never run on an operator's machine.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from api.phone_numbers import mask_phone

# The first line, as csv.writer ends its lines.
HEADER = (
    "call_sid,created_at,driver_id,driver_name,phone_number,status,failure_reason,"
    "duration_secs,call_successful,answers,cost_credits\r\n"
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    """Return a value as a cell a spreadsheet shows rather than evaluates (answers as JSON)."""
    if value is None:
        return ""
    if isinstance(value, dict):  # JSON starts with "{": never a formula
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(calls: Iterable) -> Iterator[str]:
    """Yield the CSV text, the header first, a few hundred lines per chunk sent."""
    buffer = io.StringIO()
    buffer.write(HEADER)
    writer = csv.writer(buffer)
    for call in calls:
        phone = call.phone_number and mask_phone(call.phone_number)
        row = (call.call_sid, call.created_at, call.driver_id, call.driver_name, phone, call.status)
        row += (call.failure_reason, call.call_duration_secs, call.call_successful)
        writer.writerow(map(cell, (*row, call.data_collection, call.cost_credits)))
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
