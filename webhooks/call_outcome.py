"""A call's outcome read from its conversation: verdict, summary, answers, cost, duration.

The duration and termination reason read here are also what completes the call
row. Any field may be missing, null or odd: unknown stays None, never 0. What a
column could not hold (a NUL, a lone surrogate, a summary or answers too large,
dollars past ``numeric(14, 6)``) is cut or dropped with a note, as every field
kept for the record is: refusing it would refuse the transcript and the call's
end with it, and no replay could ever apply them.
"""

import json
from decimal import Decimal

from elevenlabs import payloads
from models.calls import BIGINT_MAX
from models.outcomes import VERDICTS, Outcome

MAX_SUMMARY_LENGTH = 20_000
MAX_JSON_CHARS = 256 * 1024
# Levels of nesting kept of answers and evaluation (ElevenLabs sends two or three).
# Deeper is dropped with a note: encoding it again (psycopg, then every API and
# console read) runs deeper in the stack than its parse did, and would hit
# Python's recursion limit, a 500, for bodies just under the parser's own limit.
MAX_JSON_DEPTH = 64
MAX_USD = Decimal(10) ** 8  # call_outcomes.cost_usd is numeric(14, 6)
MAX_DURATION_SECS = 10 * 24 * 3600
MAX_TERMINATION_REASON_LENGTH = 2000


def of_conversation(
    data, *, usd_per_credit: Decimal | None = None, notes: list | None = None
) -> Outcome:
    """Read the outcome from a conversation's ``data``, noting in ``notes`` what was dropped."""
    notes = [] if notes is None else notes
    data = _dict(data)
    analysis, metadata = _dict(data.get("analysis")), _dict(data.get("metadata"))
    verdict = analysis.get("call_successful")
    results = analysis.get("data_collection_results")  # {name: {value, rationale, …}}
    answers = {
        str(name): item.get("value")
        for name, item in _dict(results).items()
        if isinstance(item, dict)
    }
    evaluation = analysis.get("evaluation_criteria_results")
    credits = _count(metadata.get("cost"))
    usd = None if credits is None or usd_per_credit is None else credits * usd_per_credit
    if usd is not None and usd >= MAX_USD:
        notes.append(f"cost in USD ignored: {credits} credits price at {usd:.0f}")
        usd = None
    return Outcome(
        call_successful=verdict if verdict in VERDICTS else None,
        summary=payloads.informational(
            _text(analysis.get("transcript_summary")),
            "data.analysis.transcript_summary",
            notes,
            max_length=MAX_SUMMARY_LENGTH,
        ),
        data_collection=_json(
            answers if isinstance(results, dict) else None,
            "data.analysis.data_collection_results",
            notes,
        ),
        evaluation=_json(
            evaluation if isinstance(evaluation, dict) else None,
            "data.analysis.evaluation_criteria_results",
            notes,
        ),
        cost_credits=credits,
        cost_usd=usd,
        termination_reason=payloads.informational(
            metadata.get("termination_reason"),
            "data.metadata.termination_reason",
            notes,
            max_length=MAX_TERMINATION_REASON_LENGTH,
        ),
        duration_secs=_duration(metadata.get("call_duration_secs"), notes),
    )


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _count(value) -> int | None:
    # bool is an int to Python, never a count to ElevenLabs; 16.0 is 16; nan and inf are not.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= BIGINT_MAX else None


def _duration(value, notes: list) -> int | None:
    """Return the call's length in whole seconds (1.5 is 2); a value we cannot use is noted."""
    field = "data.metadata.call_duration_secs"
    try:
        seconds = payloads.number(value, field, required=False)
    except payloads.Rejected as rejection:
        notes.append(f"{rejection.outcome.reason}: ignored")
        return None
    if seconds is not None and not 0 <= seconds <= MAX_DURATION_SECS:
        notes.append(f"{field} is out of range ({seconds}): ignored")
        return None
    return None if seconds is None else round(seconds)


def _json(value: dict | None, field: str, notes: list) -> dict | None:
    """Return ``value`` if ``jsonb`` can hold it; otherwise note why it is ignored."""
    if value is None:
        return None
    if _deeper_than(value, MAX_JSON_DEPTH):
        notes.append(f"{field} ignored: nested deeper than {MAX_JSON_DEPTH} levels")
        return None
    dumped = json.dumps(value, ensure_ascii=False)
    # jsonb refuses \u0000 even escaped; a lone surrogate is not UTF-8.
    if "\\u0000" in dumped or not payloads.storable(dumped):
        notes.append(f"{field} ignored: it contains a NUL character or invalid unicode")
        return None
    if len(dumped) > MAX_JSON_CHARS:
        notes.append(f"{field} ignored: {len(dumped)} characters; the limit is {MAX_JSON_CHARS}")
        return None
    return value


def _deeper_than(value, levels: int) -> bool:
    """Return whether ``value`` nests more than ``levels`` objects or arrays deep."""
    if not isinstance(value, dict | list):
        return False
    if levels == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, levels - 1) for child in children)
