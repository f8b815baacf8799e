"""012: the console overview's counts per closed hour, by status and by duration.

Derived counts the dispatch worker recounts every minute (``console/hours.py``):
no backfill, nothing lost when dropped. Two new tables with their keys in one
short transaction; ``call_hour_durations``' key carries the count so the median
is read from the index alone.
"""


def upgrade(db):
    """Create the rollup tables and their keys."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS call_hours (
            hour           timestamptz NOT NULL,  -- the UTC hour the calls were created in
            status         text NOT NULL,
            failure_reason text,
            calls          bigint NOT NULL,
            answered       bigint NOT NULL,       -- of them, with an answer collected
            counted_at     timestamptz NOT NULL DEFAULT now()  -- the recount that wrote it
        );
        CREATE UNIQUE INDEX IF NOT EXISTS call_hours_key
            ON call_hours (hour, status, failure_reason) NULLS NOT DISTINCT;
        CREATE TABLE IF NOT EXISTS call_hour_durations (
            hour          timestamptz NOT NULL,
            duration_secs bigint NOT NULL,
            calls         bigint NOT NULL,
            PRIMARY KEY (hour, duration_secs) INCLUDE (calls)
        );
        """
    )


def downgrade(db):
    """Drop the tables (only the new code reads them, and it is rolled back first)."""
    db.execute(
        """
        -- squawk-ignore ban-drop-table
        DROP TABLE IF EXISTS call_hour_durations, call_hours
        """
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
