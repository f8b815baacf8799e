"""003: make ``calls.call_sid`` unique and NOT NULL without blocking the table.

The unique index is built CONCURRENTLY, then attached as the constraint
``calls_call_sid_key`` (``USING INDEX``: no second build). NOT NULL goes through
a validated CHECK so that ``SET NOT NULL`` skips its full-table scan. Duplicates
stop the run before anything is built, listing them. Calls without a call_sid
(written as NULL after 002 ran: 002 is applied, so running it again does
nothing) get one first, exactly as 002 gives it (``legacy_<id>``, in batches,
cleared by 002's downgrade like the rest).
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import importlib

from migrations.kit import Check, Migration, Run, Sql, Step, main
from migrations.steps import ConcurrentIndex, DropIndexConcurrently, Report, SetNotNull

BACKFILL_002 = importlib.import_module("migrations.002_backfill_call_sid").MIGRATION.upgrade[0]

CONSTRAINT_EXISTS = """
    SELECT 1 FROM pg_constraint
    WHERE conrelid = 'calls'::regclass AND conname = 'calls_call_sid_key'
"""


def no_duplicates(conn) -> str | None:
    """Return why the constraints cannot be built (duplicate call_sids), or None."""
    if conn.execute(CONSTRAINT_EXISTS).fetchone():
        return None  # already unique: an earlier run got past the build
    duplicates = conn.execute(
        """
        SELECT call_sid, count(*), string_agg(id::text, ',' ORDER BY id), count(*) OVER ()
        FROM calls WHERE call_sid IS NOT NULL
        GROUP BY call_sid HAVING count(*) > 1
        ORDER BY call_sid LIMIT 20
        """
    ).fetchall()
    if duplicates:
        listed = "; ".join(f"{sid!r} x{n} (ids {ids})" for sid, n, ids, _ in duplicates)
        more = duplicates[0][3] - len(duplicates)
        listed += f"; and {more} more" if more else ""
        return (
            f"duplicate call_sid values, nothing built: {listed}; give those calls "
            "distinct call_sids and run 003 again"
        )
    return None


def give_missing_call_sids(conn, run: Run) -> None:
    """Give calls still without a call_sid one, with 002's own batched backfill."""
    if conn.execute(CONSTRAINT_EXISTS).fetchone():
        return  # an earlier run got past this: NOT NULL follows the constraint
    missing = conn.execute("SELECT count(*) FROM calls WHERE call_sid IS NULL").fetchone()[0]
    if missing:
        run.say(f"  {missing:,} calls have no call_sid (written since 002); filling as 002 does")
        BACKFILL_002.apply(conn, run)


MIGRATION = Migration(
    version=3,
    name="add_call_sid_constraints",
    upgrade=[
        Check(no_duplicates),
        Step(give_missing_call_sids, sql=BACKFILL_002.sql_text()),
        ConcurrentIndex(
            "calls_call_sid_key",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS calls_call_sid_key ON calls (call_sid)",
        ),
        Sql(
            """
            ALTER TABLE calls
                ADD CONSTRAINT calls_call_sid_key UNIQUE USING INDEX calls_call_sid_key
            """,
            skip_if=CONSTRAINT_EXISTS,
        ),
        SetNotNull("calls", "call_sid"),
        Report(
            "indexes on calls",
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls' ORDER BY 1",
        ),
        Report(
            "constraints on calls",
            """
            SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = 'calls'::regclass ORDER BY 1
            """,
        ),
        # Before PostgreSQL 18, NOT NULL is no pg_constraint row: say it on every version.
        Report(
            "call_sid column",
            """
            SELECT attname, CASE WHEN attnotnull THEN 'NOT NULL' ELSE 'nullable' END
              FROM pg_attribute WHERE attrelid = 'calls'::regclass AND attname = 'call_sid'
            """,
        ),
    ],
    downgrade=[
        Sql(
            """
            -- Rolling back 003: old code never reads call_sid, so it relies on none
            -- of these guarantees. Each is catalog work under a brief lock, no scan.
            -- squawk-ignore ban-drop-constraint
            ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_call_sid_check_not_null
            """
        ),
        Sql(
            """
            -- squawk-ignore ban-drop-not-null
            ALTER TABLE calls ALTER COLUMN call_sid DROP NOT NULL
            """
        ),
        Sql(
            """
            -- Dropping the constraint drops its index too.
            -- squawk-ignore ban-drop-constraint
            ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_call_sid_key
            """
        ),
        # A build that failed before the constraint was attached leaves only the index.
        DropIndexConcurrently("calls_call_sid_key"),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
