"""A call's outcome: what ElevenLabs made of the conversation, kept in ``call_outcomes`` (009).

Unknown stays None (NULL), never 0. ``termination_reason`` and the duration are
the call row's; ``of_call`` joins them.
"""

from dataclasses import dataclass
from decimal import Decimal

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

VERDICTS = ("success", "failure", "unknown")


@dataclass
class Outcome:
    call_successful: str | None = None
    summary: str | None = None
    data_collection: dict | None = None  # {name: value}, the driver's answers
    evaluation: dict | None = None  # evaluation_criteria_results as ElevenLabs sent them
    cost_credits: int | None = None
    cost_usd: Decimal | None = None
    termination_reason: str | None = None
    duration_secs: int | None = None


# Known values are never replaced by unknown ones; a row that would not change
# is not written (RETURNING nothing), so a repeat says "nothing changed".
SAVE = """
INSERT INTO call_outcomes AS o
       (call_id, call_successful, summary, data_collection, evaluation, cost_credits, cost_usd)
VALUES (%(call_id)s, %(call_successful)s, %(summary)s, %(data_collection)s, %(evaluation)s,
        %(cost_credits)s, %(cost_usd)s)
ON CONFLICT (call_id) DO UPDATE
   SET call_successful = COALESCE(EXCLUDED.call_successful, o.call_successful),
       summary = COALESCE(EXCLUDED.summary, o.summary),
       data_collection = COALESCE(EXCLUDED.data_collection, o.data_collection),
       evaluation = COALESCE(EXCLUDED.evaluation, o.evaluation),
       cost_credits = COALESCE(EXCLUDED.cost_credits, o.cost_credits),
       cost_usd = COALESCE(EXCLUDED.cost_usd, o.cost_usd),
       updated_at = now()
 WHERE (o.call_successful, o.summary, o.data_collection, o.evaluation, o.cost_credits, o.cost_usd)
       IS DISTINCT FROM
       (COALESCE(EXCLUDED.call_successful, o.call_successful),
        COALESCE(EXCLUDED.summary, o.summary),
        COALESCE(EXCLUDED.data_collection, o.data_collection),
        COALESCE(EXCLUDED.evaluation, o.evaluation),
        COALESCE(EXCLUDED.cost_credits, o.cost_credits),
        COALESCE(EXCLUDED.cost_usd, o.cost_usd))
RETURNING call_id
"""

OF_CALL = """
SELECT o.call_successful, o.summary, o.data_collection, o.evaluation, o.cost_credits,
       o.cost_usd, c.termination_reason, c.call_duration_secs AS duration_secs
  FROM calls c LEFT JOIN call_outcomes o ON o.call_id = c.id
 WHERE c.id = %s
"""


def save(conn, call_id: int, outcome: Outcome) -> bool:
    """Store a call's outcome, keeping what is known; return whether anything changed."""
    params = {**vars(outcome), "call_id": call_id}
    for name in ("data_collection", "evaluation"):
        if params[name] is not None:
            params[name] = Jsonb(params[name])
    return conn.execute(SAVE, params).fetchone() is not None


def of_call(conn, call_id: int) -> Outcome | None:
    """Return what is known of the call's outcome (all None before any), or None for no call."""
    with conn.cursor(row_factory=class_row(Outcome)) as cur:
        return cur.execute(OF_CALL, (call_id,)).fetchone()


def as_json(outcome: Outcome) -> dict:
    """Return the API's ``outcome`` object: every member present, null until known."""
    return {
        "call_successful": outcome.call_successful,
        "summary": outcome.summary,
        "data_collection": outcome.data_collection,
        "termination_reason": outcome.termination_reason,
        "duration_secs": outcome.duration_secs,
        "cost": {
            "credits": outcome.cost_credits,
            "usd": None if outcome.cost_usd is None else float(outcome.cost_usd),
        },
    }
