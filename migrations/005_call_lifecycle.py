"""005: what a call row keeps of its life: failure reason, Twilio's SID, timestamps.

Nullable columns without defaults: catalog-only on any table size. Old code never reads them.
"""

COLUMNS = """
    driver_name, failure_reason, twilio_call_sid, api_called_at, initiated_at, failed_at,
    completed_at, call_duration_secs, termination_reason
"""


def upgrade(db):
    """Add the lifecycle columns."""
    db.execute(
        """
        ALTER TABLE calls
            ADD COLUMN IF NOT EXISTS driver_name        text,
            ADD COLUMN IF NOT EXISTS failure_reason     text,
            ADD COLUMN IF NOT EXISTS twilio_call_sid    text,
            ADD COLUMN IF NOT EXISTS api_called_at      timestamptz,
            ADD COLUMN IF NOT EXISTS initiated_at       timestamptz,
            ADD COLUMN IF NOT EXISTS failed_at          timestamptz,
            ADD COLUMN IF NOT EXISTS completed_at       timestamptz,
            ADD COLUMN IF NOT EXISTS call_duration_secs bigint,
            ADD COLUMN IF NOT EXISTS termination_reason text
        """
    )


def before_downgrade(db):
    """Say how many calls lose lifecycle data, and how to export it first."""
    held = f"num_nonnulls({COLUMNS}) > 0"
    if db.value(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('calls') "
        "AND attname = 'termination_reason'"
    ):
        count = db.value(f"SELECT count(*) FROM calls WHERE {held}")
        if count:
            db.will_drop(
                f"the lifecycle columns ({' '.join(COLUMNS.split())}) of {count:,} calls",
                f"SELECT id, call_sid, conversation_id, {COLUMNS} FROM calls WHERE {held}",
                "calls-lifecycle-005",
            )


def downgrade(db):
    """Drop the columns (after the code is rolled back: old code never reads them)."""
    db.execute(
        """
        -- Catalog-only, no rewrite. (File-wide: squawk's per-statement ignore covers
        -- one line, and each column is its own line.)
        -- squawk-ignore-file ban-drop-column
        ALTER TABLE calls
            DROP COLUMN IF EXISTS driver_name,
            DROP COLUMN IF EXISTS failure_reason,
            DROP COLUMN IF EXISTS twilio_call_sid,
            DROP COLUMN IF EXISTS api_called_at,
            DROP COLUMN IF EXISTS initiated_at,
            DROP COLUMN IF EXISTS failed_at,
            DROP COLUMN IF EXISTS completed_at,
            DROP COLUMN IF EXISTS call_duration_secs,
            DROP COLUMN IF EXISTS termination_reason
        """
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
