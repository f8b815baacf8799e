"""Check how the webhooks fared recently ("Monitor webhook failure rates" in the checklist).

Reads the delivery log of migration 006 (``webhook_deliveries``), where every
delivery is recorded with its outcome, accepted or not.
"""

from models.webhook_deliveries import SETTLED  # outcomes answered 200: nothing was refused
from ops.catalog import table_exists
from ops.report import failed, passed, warned


def deliveries(conn, opts):
    """Count deliveries in the window: total, rejected, rejection rate, and why."""
    name = "webhook_deliveries"
    if not table_exists(conn, "webhook_deliveries"):
        return failed(name, "no webhook_deliveries table (migration 006 not applied)")
    window = {"mins": opts.window_minutes}
    total, rejected, by_call_sid, by_conversation = conn.execute(
        """
        SELECT count(*),
               count(*) FILTER (WHERE outcome <> ALL(%(settled)s)),
               count(*) FILTER (WHERE call_sid IS NOT NULL),
               count(*) FILTER (WHERE call_sid IS NULL AND conversation_id IS NOT NULL)
          FROM webhook_deliveries
         WHERE received_at >= now() - make_interval(mins => %(mins)s)
        """,
        {"settled": list(SETTLED), **window},
    ).fetchone()
    reasons = conn.execute(
        """
        SELECT outcome, count(*) FROM webhook_deliveries
         WHERE received_at >= now() - make_interval(mins => %(mins)s)
           AND outcome <> ALL(%(settled)s)
         GROUP BY outcome ORDER BY count(*) DESC, outcome
        """,
        {"settled": list(SETTLED), **window},
    ).fetchall()
    rate = rejected / total if total else 0.0
    figures = {
        "window_minutes": opts.window_minutes,
        "total": total,
        "rejected": rejected,
        "rejection_rate": round(rate, 4),
        "reasons": dict(reasons),
        "by_call_sid": by_call_sid,
        "by_conversation_id_only": by_conversation,
    }
    span = f"last {opts.window_minutes} min"
    if not total:
        return warned(
            name,
            f"no webhook deliveries in the {span}: is the ElevenLabs webhook pointed here?",
            **figures,
        )
    why = ", ".join(f"{outcome} {n}" for outcome, n in reasons)
    line = (
        f"{span}: {total} deliveries, {rejected} rejected ({rate:.1%})"
        + (f" [{why}]" if why else "")
        + f"; {by_call_sid} named a call_sid, {by_conversation} only a conversation_id"
    )
    if rate > opts.max_rejection_rate:
        return warned(
            name,
            f"{line}; above {opts.max_rejection_rate:.0%}: inspect and replay them",
            **figures,
        )
    return passed(name, line, **figures)
