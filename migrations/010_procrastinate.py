"""010: procrastinate's schema: the job queue the dispatch worker runs on.

The ``schema.sql`` shipped in the pinned package, applied as it is in one
transaction: new tables, types and functions only, so nothing the service uses
is locked. A new pin brings a new numbered migration applying its migration files.
"""

from procrastinate.schema import SchemaManager

SQUAWK_REASONS = """
-- procrastinate's own schema, created empty in one transaction (its indexes on new,
-- empty tables block nobody) and kept as shipped, so its later migration files apply.
-- squawk-ignore-file prefer-identity, prefer-bigint-over-int, prefer-text-field
-- squawk-ignore-file prefer-robust-stmts, require-concurrent-index-creation
"""


def upgrade(db):
    """Create procrastinate's tables, types and functions, unless they are there."""
    db.execute(
        SQUAWK_REASONS + SchemaManager.get_schema(),
        unless="SELECT 1 FROM pg_tables WHERE tablename = 'procrastinate_jobs'",
    )


def downgrade(db):
    """Drop the job queue (stop the workers first)."""
    db.execute(
        """
        -- Rolling back 010 drops the job queue with every job in it; stop the
        -- workers first. Their work is in call_batch_entries (011), not here.
        -- Only procrastinate's functions use these types.
        -- squawk-ignore-file ban-drop-table, ban-drop-type
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DO $$
        DECLARE f regprocedure;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
                      WHERE p.proname LIKE 'procrastinate\\_%'
                        AND p.pronamespace = current_schema()::regnamespace
            LOOP
                EXECUTE format('DROP FUNCTION %s', f);
            END LOOP;
        END;
        $$;
        DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type,
            procrastinate_job_status;
        """
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
