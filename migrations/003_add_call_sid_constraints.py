"""003: make ``calls.call_sid`` unique and NOT NULL without blocking the table.

The unique index is built CONCURRENTLY, then attached as the constraint
``calls_call_sid_key`` (``USING INDEX``: no second build). NOT NULL goes through
a validated CHECK so that ``SET NOT NULL`` skips its full-table scan. Duplicates
or missing call_sids stop the run before anything is built, listing them.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Check, Migration, Sql, main
from migrations.steps import ConcurrentIndex, DropIndexConcurrently, Report, SetNotNull

CONSTRAINT_EXISTS = """
    SELECT 1 FROM pg_constraint
    WHERE conrelid = 'calls'::regclass AND conname = 'calls_call_sid_key'
"""


def no_duplicates_or_nulls(conn) -> str | None:
    """Return why the constraints cannot be built (duplicates, NULLs), or None."""
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
    missing = conn.execute("SELECT count(*) FROM calls WHERE call_sid IS NULL").fetchone()[0]
    if missing:
        return f"{missing} calls have no call_sid, nothing built; run 002 again, then 003"
    return None


MIGRATION = Migration(
    version=3,
    name="add_call_sid_constraints",
    upgrade=[
        Check(no_duplicates_or_nulls),
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
