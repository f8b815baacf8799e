"""Checks of what the new code writes: its calls (checklist Step 3 and "Monitor first 10-20
calls") and how its webhooks fared ("Monitor webhook failure rates")."""

from collections import Counter

from psycopg.rows import dict_row

from models.webhook_deliveries import SETTLED  # outcomes answered 200: nothing was refused
from ops.catalog import needs, table_exists
from ops.report import failed, passed, warned

# The lifecycle columns of migration 005.
LIFECYCLE = ("api_called_at", "failure_reason", "initiated_at", "failed_at")


def _recent(conn, limit: int) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    sql = """
        SELECT id, call_sid, conversation_id, status, failure_reason, created_at, api_called_at
          FROM calls ORDER BY id DESC LIMIT %s
    """
    return cur.execute(sql, (limit,)).fetchall()


def _named(call: dict) -> str:
    """Name a call by its call_sid, else by its id (a legacy row has no call_sid)."""
    return call["call_sid"] or f"id {call['id']}"


def _lacking(calls: list[dict], status: str, column: str) -> list[str]:
    """Name the calls of this status without this column."""
    return [_named(c) for c in calls if c["status"] == status and not c[column]]


@needs("005", *LIFECYCLE)
def created_before_api_call(conn, opts):
    """Check each recent call's row was written before its ElevenLabs request (the feature)."""
    calls = _recent(conn, opts.recent)
    dialled = [c for c in calls if c["api_called_at"] is not None]
    late = [_named(c) for c in dialled if c["created_at"] > c["api_called_at"]]
    figures = {"recent": len(calls), "dialled": len(dialled), "written_after_request": len(late)}
    if late:
        return failed(
            f"{len(late)} of {len(dialled)} recent calls were written after their API call: "
            + ", ".join(late[:5]),
            **figures,
        )
    if not dialled:
        return warned(
            f"none of the last {len(calls)} calls was made by the new code yet; "
            "create a test call (POST /driver_data/call-elevenlabs)",
            **figures,
        )
    return passed(
        f"{len(dialled)} of the last {len(calls)} calls reached ElevenLabs; every row "
        "was committed before its request (created_at <= api_called_at)",
        **figures,
    )


def recent_calls_have_call_sid(conn, opts):
    """Check the last N calls all carry a call_sid."""
    calls = _recent(conn, opts.recent)
    missing = [c["id"] for c in calls if not c["call_sid"]]
    if missing:
        return failed(f"{len(missing)} of the last {len(calls)} calls have no call_sid")
    return passed(f"{len(calls)} of the last {len(calls)} calls have a call_sid")


@needs("005", *LIFECYCLE)
def recent_conversation_ids(conn, opts):
    """Check answered calls got their conversation_id, and failed ones say why (audit trail)."""
    calls = _recent(conn, opts.recent)
    counts = dict(sorted(Counter(call["status"] for call in calls).items()))
    completed = _lacking(calls, "completed", "conversation_id")
    initiated = _lacking(calls, "initiated", "conversation_id")
    unexplained = _lacking(calls, "failed", "failure_reason")
    figures = {
        "by_status": counts,
        "completed_without_conversation_id": len(completed),
        "initiated_without_conversation_id": len(initiated),
        "failed_without_reason": len(unexplained),
    }
    shape = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no calls"
    shape = f"last {len(calls)}: {shape}"
    problems = []
    if completed:
        problems.append(f"completed without conversation_id: {', '.join(completed[:5])}")
    if unexplained:
        problems.append(f"failed without a reason: {', '.join(unexplained[:5])}")
    if problems:
        return failed(f"{shape}; " + "; ".join(problems), **figures)
    if initiated:
        # ElevenLabs may answer success with a null id; the post-call webhook brings it.
        return warned(
            f"{shape}; {len(initiated)} initiated still without conversation_id "
            "(webhooks by call_sid get 400 until it arrives): " + ", ".join(initiated[:5]),
            **figures,
        )
    return passed(
        f"{shape}; every initiated/completed call has its conversation_id, "
        "every failed one a reason",
        **figures,
    )


def stuck_initiating(conn, opts):
    """Find calls left in 'initiating' for longer than the threshold (a process died mid-call)."""
    minutes = opts.stuck_minutes
    count, oldest, sample = conn.execute(
        """
        SELECT count(*), min(created_at),
               (array_agg(call_sid ORDER BY created_at))[1:5]
          FROM calls
         WHERE status = 'initiating' AND created_at < now() - make_interval(mins => %s)
        """,
        (minutes,),
    ).fetchone()
    figures = {"stuck": count, "older_than_minutes": minutes, "oldest": oldest}
    if count:
        return failed(
            f"{count} calls stuck in 'initiating' for over {minutes} min "
            f"(oldest created {oldest:%Y-%m-%d %H:%M:%S %Z}): {', '.join(sample)}; "
            f"settle them with `python -m ops reconcile --older-than {minutes}` "
            "(found at ElevenLabs by call_sid; do not redial: the driver may have been rung)",
            **figures,
        )
    return passed(f"no call in 'initiating' for over {minutes} min", **figures)


def webhook_deliveries(conn, opts):
    """Count the window's deliveries (migration 006's log): total, rejected, rate, and why.

    A rejection that ``ops replay`` has since settled is counted apart: it needs no
    more replaying, and warning about it would keep the check from ever clearing.
    """
    if not table_exists(conn, "webhook_deliveries"):
        return failed("no webhook_deliveries table (migration 006 not applied)")
    rows = conn.execute(
        """
        SELECT outcome, count(*),
               count(*) FILTER (WHERE call_sid IS NOT NULL),
               count(*) FILTER (WHERE call_sid IS NULL AND conversation_id IS NOT NULL),
               count(*) FILTER (WHERE replay_outcome = ANY(%s))
          FROM webhook_deliveries
         WHERE received_at >= now() - make_interval(mins => %s)
         GROUP BY outcome ORDER BY count(*) DESC, outcome
        """,
        (list(SETTLED), opts.window_minutes),
    ).fetchall()
    total = sum(row[1] for row in rows)
    unsettled = [row for row in rows if row[0] not in SETTLED]
    replayed = sum(row[4] for row in unsettled)
    reasons = {row[0]: row[1] - row[4] for row in unsettled if row[1] > row[4]}
    rejected = sum(reasons.values())
    by_call_sid, by_conversation = sum(row[2] for row in rows), sum(row[3] for row in rows)
    rate = rejected / total if total else 0.0
    figures = {
        "window_minutes": opts.window_minutes,
        "total": total,
        "rejected": rejected,
        "settled_by_replay": replayed,
        "rejection_rate": round(rate, 4),
        "reasons": reasons,
        "by_call_sid": by_call_sid,
        "by_conversation_id_only": by_conversation,
    }
    span = f"last {opts.window_minutes} min"
    if not total:
        return warned(
            f"no webhook deliveries in the {span}: is the ElevenLabs webhook pointed here?",
            **figures,
        )
    why = ", ".join(f"{outcome} {n}" for outcome, n in reasons.items())
    line = (
        f"{span}: {total} deliveries, {rejected} rejected ({rate:.1%})"
        + (f" [{why}]" if why else "")
        + (f", {replayed} since settled by replay" if replayed else "")
        + f"; {by_call_sid} named a call_sid, {by_conversation} only a conversation_id"
    )
    if rate > opts.max_rejection_rate:
        return warned(
            f"{line}; above {opts.max_rejection_rate:.0%}: inspect and replay them", **figures
        )
    return passed(line, **figures)
