"""005: what a call row keeps of its life: API outcome, failure reason, Twilio's SID, timestamps.

Nullable columns without defaults: adding them is a catalog-only change, instant
on any table size. Old code never reads them.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, Sql, main

MIGRATION = Migration(
    version=5,
    name="call_lifecycle",
    upgrade=[
        Sql(
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
                ADD COLUMN IF NOT EXISTS termination_reason text;
            """
        )
    ],
    downgrade=[
        Sql(
            """
            -- Rolling back 005 comes after rolling back the code: old code never
            -- reads these columns. Their data (failure reasons, Twilio SIDs) goes
            -- with them; take a backup first if it matters. Catalog-only, no rewrite.
            -- (File-wide: squawk's per-statement ignore covers one line, and each
            -- column is its own line.)
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
                DROP COLUMN IF EXISTS termination_reason;
            """
        )
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
