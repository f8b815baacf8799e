"""009: what ElevenLabs made of each call, and the indexes the console searches calls by.

``call_outcomes`` is a table of its own (one row per call), not columns on
``calls``: new and empty, it is created in one short transaction (its foreign key
takes a brief SHARE ROW EXCLUSIVE lock on ``calls``) and dropped without touching
the busiest table; it is written once, late, by one code path (an upsert on
the key makes it idempotent), and keeps the verdict, summary and JSONB answers
out of the rows every lifecycle step updates. NULL means unknown, never 0.

The console's indexes on ``calls`` are built CONCURRENTLY. ``text_pattern_ops``
lets ``LIKE 'prefix%'`` use them whatever the collation; the two expression
indexes are not partial because ANALYZE keeps expression statistics only for
whole indexes, and without them the planner misjudges a search. The created_at
index carries what the overview counts, so recent days read the index alone.
"""


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
    if count := db.rows_in("call_outcomes"):
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


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
