"""Checks of the calls the new code made (checklist Step 3 and "Monitor first 10-20 calls").

They need the lifecycle columns of migration 005; without them each says so.
"""

from ops.catalog import missing_columns
from ops.report import failed, passed, warned

LIFECYCLE = ("api_called_at", "failure_reason", "initiated_at", "failed_at")


def _needs_005(conn, name):
    missing = missing_columns(conn, "calls", LIFECYCLE)
    if missing:
        return failed(name, f"calls lacks {', '.join(missing)} (migration 005 not applied)")
    return None


def _recent(conn, limit: int) -> list[dict]:
    cur = conn.execute(
        """
        SELECT id, call_sid, conversation_id, status, failure_reason,
               created_at, api_called_at
          FROM calls ORDER BY id DESC LIMIT %s
        """,
        (limit,),
    )
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _named(call: dict) -> str:
    """Return how a line names a call: its call_sid, or its id where it has none."""
    return call["call_sid"] or f"id {call['id']}"


def created_before_api_call(conn, opts):
    """Check each recent call's row was written before its ElevenLabs request (the feature)."""
    name = "created_before_api_call"
    if refusal := _needs_005(conn, name):
        return refusal
    calls = _recent(conn, opts.recent)
    dialled = [c for c in calls if c["api_called_at"] is not None]
    late = [_named(c) for c in dialled if c["created_at"] > c["api_called_at"]]
    figures = {"recent": len(calls), "dialled": len(dialled), "written_after_request": len(late)}
    if late:
        return failed(
            name,
            f"{len(late)} of {len(dialled)} recent calls were written after their API call: "
            + ", ".join(late[:5]),
            **figures,
        )
    if not dialled:
        return warned(
            name,
            f"none of the last {len(calls)} calls was made by the new code yet; "
            "create a test call (POST /driver_data/call-elevenlabs)",
            **figures,
        )
    return passed(
        name,
        f"{len(dialled)} of the last {len(calls)} calls reached ElevenLabs; every row "
        "was committed before its request (created_at <= api_called_at)",
        **figures,
    )


def recent_calls_have_call_sid(conn, opts):
    """Check the last N calls all carry a call_sid."""
    name = "recent_calls_have_call_sid"
    calls = _recent(conn, opts.recent)
    missing = [c["id"] for c in calls if not c["call_sid"]]
    if missing:
        return failed(name, f"{len(missing)} of the last {len(calls)} calls have no call_sid")
    return passed(name, f"{len(calls)} of the last {len(calls)} calls have a call_sid")


def recent_conversation_ids(conn, opts):
    """Check answered calls got their conversation_id, and failed ones say why (audit trail)."""
    name = "recent_conversation_ids"
    if refusal := _needs_005(conn, name):
        return refusal
    calls = _recent(conn, opts.recent)
    by_status: dict[str, list[dict]] = {}
    for call in calls:
        by_status.setdefault(call["status"], []).append(call)
    completed_bare = [_named(c) for c in by_status.get("completed", []) if not c["conversation_id"]]
    initiated_bare = [_named(c) for c in by_status.get("initiated", []) if not c["conversation_id"]]
    unexplained = [_named(c) for c in by_status.get("failed", []) if not c["failure_reason"]]
    counts = {status: len(rows) for status, rows in sorted(by_status.items())}
    figures = {
        "by_status": counts,
        "completed_without_conversation_id": len(completed_bare),
        "initiated_without_conversation_id": len(initiated_bare),
        "failed_without_reason": len(unexplained),
    }
    shape = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no calls"
    if completed_bare or unexplained:
        problems = []
        if completed_bare:
            problems.append(f"completed without conversation_id: {', '.join(completed_bare[:5])}")
        if unexplained:
            problems.append(f"failed without a reason: {', '.join(unexplained[:5])}")
        return failed(name, f"last {len(calls)}: {shape}; " + "; ".join(problems), **figures)
    if initiated_bare:
        # ElevenLabs may answer success with a null id; the post-call webhook brings it.
        return warned(
            name,
            f"last {len(calls)}: {shape}; {len(initiated_bare)} initiated still without "
            f"conversation_id (webhooks by call_sid get 400 until it arrives): "
            + ", ".join(initiated_bare[:5]),
            **figures,
        )
    return passed(
        name,
        f"last {len(calls)}: {shape}; every initiated/completed call has its conversation_id, "
        "every failed one a reason",
        **figures,
    )


def stuck_initiating(conn, opts):
    """Find calls left in 'initiating' for longer than the threshold (a process died mid-call)."""
    name = "stuck_initiating"
    count, oldest, sample = conn.execute(
        """
        SELECT count(*), min(created_at),
               (array_agg(call_sid ORDER BY created_at))[1:5]
          FROM calls
         WHERE status = 'initiating' AND created_at < now() - make_interval(mins => %s)
        """,
        (opts.stuck_minutes,),
    ).fetchone()
    figures = {"stuck": count, "older_than_minutes": opts.stuck_minutes, "oldest": oldest}
    if count:
        return failed(
            name,
            f"{count} calls stuck in 'initiating' for over {opts.stuck_minutes} min "
            f"(oldest created {oldest:%Y-%m-%d %H:%M:%S %Z}): {', '.join(sample)}; "
            f"settle them with `python -m ops reconcile --older-than {opts.stuck_minutes}` "
            "(found at ElevenLabs by call_sid; do not redial: the driver may have been rung)",
            **figures,
        )
    return passed(name, f"no call in 'initiating' for over {opts.stuck_minutes} min", **figures)
