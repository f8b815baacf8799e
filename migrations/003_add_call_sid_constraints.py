"""003: make ``calls.call_sid`` unique and NOT NULL without blocking the table.

Duplicates stop it before anything is built. The unique index is built
CONCURRENTLY, then attached as the constraint (no second build); NOT NULL is set
through a validated CHECK (``db.set_not_null``). Each step is skipped once done,
so a stopped run is finished by running it again.
"""


def upgrade(db):
    """Refuse duplicates, fill the gaps, build the unique index, then NOT NULL scan-free."""
    duplicates = db.value(
        """
        SELECT string_agg(format('%L x%s (ids %s)', call_sid, n, ids), '; ')
               || coalesce('; and ' || nullif(greatest(max(total) - 20, 0), 0) || ' more', '')
        FROM (
            SELECT call_sid, count(*) AS n, string_agg(id::text, ',' ORDER BY id) AS ids,
                   count(*) OVER () AS total
            FROM calls WHERE call_sid IS NOT NULL
            GROUP BY call_sid HAVING count(*) > 1
            ORDER BY call_sid LIMIT 20
        ) AS listed
        """
    )
    if duplicates:
        db.refuse(
            f"duplicate call_sid values, nothing built: {duplicates}; give those calls "
            "distinct call_sids and run 003 again"
        )
    # Old code wrote NULL only by naming the column; 002 is applied, so its re-run does nothing.
    db.backfill(
        "calls",
        """
        UPDATE calls SET call_sid = 'legacy_' || id
        WHERE id > %(after)s AND id <= %(upto)s AND call_sid IS NULL
        """,
        "calls backfilled",
    )
    db.create_index(
        "calls_call_sid_key",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS calls_call_sid_key ON calls (call_sid)",
    )
    db.execute(
        "ALTER TABLE calls ADD CONSTRAINT calls_call_sid_key UNIQUE USING INDEX calls_call_sid_key",
        unless="""
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'calls'::regclass AND conname = 'calls_call_sid_key'
        """,
    )
    db.set_not_null("calls", "call_sid")
    db.report(
        "indexes on calls",
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls' ORDER BY 1",
    )
    db.report(
        "constraints on calls",
        """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = 'calls'::regclass ORDER BY 1
        """,
    )
    # Before PostgreSQL 18, NOT NULL is no pg_constraint row: say it on every version.
    db.report(
        "call_sid column",
        """
        SELECT attname, CASE WHEN attnotnull THEN 'NOT NULL' ELSE 'nullable' END
        FROM pg_attribute WHERE attrelid = 'calls'::regclass AND attname = 'call_sid'
        """,
    )


def downgrade(db):
    """Drop the guarantees: old code never reads call_sid. Catalog work, no scan."""
    db.drop_not_null("calls", "call_sid")
    db.execute(
        """
        -- Dropping the constraint drops its index too.
        -- squawk-ignore ban-drop-constraint
        ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_call_sid_key
        """
    )
    # A run stopped before the constraint was attached leaves only the index.
    db.drop_index("calls_call_sid_key")


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
