"""012: ``call_hours`` and ``call_hour_durations``: the console overview's counts per closed hour.

Two new tables of derived counts (see ``console/hours.py``): the dispatch worker
recounts them from ``calls`` every minute, so they need no backfill and lose
nothing when dropped. ``call_hours`` has one row per hour, status and failure
reason (its key treats NULLs as equal: calls with no failure reason are one
group) and the time of the recount that wrote it; ``call_hour_durations`` one
per hour and duration of completed calls, its key carrying the count so the
median is read from the index alone.

Created with their keys in one short transaction (an empty table blocks nobody).
Old code never reads them; the downgrade drops them.
"""

VERSION, NAME = 12, "call_hours"


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


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
