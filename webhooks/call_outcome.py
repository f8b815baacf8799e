"""The call's outcome a post-call event carries, kept only as far as PostgreSQL can store it.

``models.outcomes`` reads the verdict, summary, answers and cost from the
conversation; here what a column could not hold (a NUL, a lone surrogate, a
summary or answers too large, dollars past ``numeric(14, 6)``) is cut or dropped
with a note, as every field kept for the record is: refusing it would refuse the
transcript and the call's end with it, and no replay could ever apply them.
"""

import dataclasses
import json
from decimal import Decimal

from elevenlabs import payloads
from models import outcomes

MAX_SUMMARY_LENGTH = 20_000
MAX_JSON_CHARS = 256 * 1024
MAX_USD = Decimal(10) ** 8  # call_outcomes.cost_usd is numeric(14, 6)


def checked(data: dict, usd_per_credit: Decimal | None, notes: list) -> outcomes.Outcome:
    """Return the outcome of a conversation's ``data``, its unstorable parts noted and dropped."""
    outcome = outcomes.outcome_from_conversation(data, usd_per_credit=usd_per_credit)
    usd = outcome.cost_usd
    if usd is not None and usd >= MAX_USD:
        notes.append(f"cost in USD ignored: {outcome.cost_credits} credits price at {usd:.0f}")
        usd = None
    return dataclasses.replace(
        outcome,
        summary=payloads.informational(
            outcome.summary,
            "data.analysis.transcript_summary",
            notes,
            max_length=MAX_SUMMARY_LENGTH,
        ),
        data_collection=_json(
            outcome.data_collection, "data.analysis.data_collection_results", notes
        ),
        evaluation=_json(outcome.evaluation, "data.analysis.evaluation_criteria_results", notes),
        cost_usd=usd,
    )


def _json(value: dict | None, field: str, notes: list) -> dict | None:
    """Return ``value`` if ``jsonb`` can hold it; otherwise note why it is ignored."""
    if value is None:
        return None
    try:
        dumped = json.dumps(value, ensure_ascii=False)
    except RecursionError:
        notes.append(f"{field} ignored: nested too deeply")
        return None
    # jsonb refuses \u0000 even escaped; a lone surrogate is not UTF-8.
    if "\\u0000" in dumped or not payloads.storable(dumped):
        notes.append(f"{field} ignored: it contains a NUL character or invalid unicode")
        return None
    if len(dumped) > MAX_JSON_CHARS:
        notes.append(f"{field} ignored: {len(dumped)} characters; the limit is {MAX_JSON_CHARS}")
        return None
    return value
