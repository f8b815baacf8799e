"""009: what ElevenLabs made of each call, and the indexes the console searches calls by.

``call_outcomes`` is a table of its own, one row per call (``call_id``), rather
than columns on ``calls``:
- it is new and empty, so it and its index are created in one short
  transaction, and the rollback is one ``DROP TABLE`` — no column dropped from
  the busiest table;
- the outcome is written once, late, by one code path (the post-call webhook or
  reconciliation): an upsert on the primary key makes that write idempotent;
- the verdict, summary and JSONB answers stay out of the ``calls`` rows every
  lifecycle step updates and every list scans.
Creating it takes a brief SHARE ROW EXCLUSIVE lock on ``calls`` for the foreign
key (under the runner's short lock timeout, retried), nothing more. Every column is
nullable: unknown stays NULL, never 0. ``termination_reason`` and
``call_duration_secs`` already live on ``calls`` (005).

The console's searches on a multi-million-row ``calls``, built CONCURRENTLY:
- ``calls_phone_suffix_idx``: the last digits of a number, as
  ``reverse(phone_number) LIKE '3210%'`` (``text_pattern_ops``, so LIKE can use it
  whatever the database's collation);
- ``calls_driver_name_idx``: a driver by the start of their name, any case;
- ``calls_created_at_idx``: the list newest first and a date range, keyed by
  (created_at, id); it carries what the overview counts (status, failure reason,
  duration), so the last 24 h / 7 days are read from the index alone.
The two expression indexes are not partial: ANALYZE gathers statistics on the
expressions of whole indexes only, and without them the planner guesses how many
calls a search matches — and walks the table for a number called twenty times.
"""

VERSION, NAME = 9, "call_outcomes"


def upgrade(db):
    """Create the outcome table with its indexes, then the console's indexes on calls."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS call_outcomes (
            call_id         bigint PRIMARY KEY REFERENCES calls (id),
            call_successful text,      -- ElevenLabs' verdict: success, failure, unknown
            summary         text,
            data_collection jsonb,     -- the driver's answers, {name: value}
            evaluation      jsonb,     -- evaluation_criteria_results as ElevenLabs sent them
            cost_credits    bigint,
            cost_usd        numeric(14, 6),
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS call_outcomes_verdict_idx
            ON call_outcomes (call_successful, call_id);
        -- The overview's collected-answer rate: calls with a value for at least one item.
        CREATE INDEX IF NOT EXISTS call_outcomes_answered_idx
            ON call_outcomes (call_id)
            WHERE jsonb_path_exists(data_collection, '$.* ? (@ != null)');
        """
    )
    db.create_index(
        "calls_phone_suffix_idx",
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_phone_suffix_idx
            ON calls (reverse(phone_number) text_pattern_ops)
        """,
    )
    db.create_index(
        "calls_driver_name_idx",
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_driver_name_idx
            ON calls (lower(driver_name) text_pattern_ops)
        """,
    )
    db.create_index(
        "calls_created_at_idx",
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_created_at_idx
            ON calls (created_at, id) INCLUDE (status, failure_reason, call_duration_secs)
        """,
    )


def before_downgrade(db):
    """Say how many recorded outcomes go, and how to export them."""
    count = db.value(
        "SELECT CASE WHEN to_regclass('call_outcomes') IS NOT NULL THEN "
        "(SELECT count(*) FROM call_outcomes) END"
    )
    if count:
        db.will_drop(
            f"call_outcomes with {count:,} recorded outcomes",
            "SELECT * FROM call_outcomes",
            "call-outcomes-009",
        )


def downgrade(db):
    """Drop the console's indexes, then the table (after the code that writes it is rolled back)."""
    db.drop_index("calls_created_at_idx")
    db.drop_index("calls_driver_name_idx")
    db.drop_index("calls_phone_suffix_idx")
    db.execute(
        """
        -- squawk-ignore ban-drop-table
        DROP TABLE IF EXISTS call_outcomes
        """
    )


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
