"""001: add ``calls.call_sid``, nullable, with a default that generates a fresh one.

The column is added without a default (a volatile default in ADD COLUMN would
rewrite the whole table under ACCESS EXCLUSIVE); the default is set in a
second, catalog-only statement, so old code that never names the column still
inserts rows with a valid call_sid. The app makes the same shape in Python:
``"cs_" + secrets.token_hex(16)``.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, Sql, main

COLUMN_MISSING = """
    SELECT 1 WHERE NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'calls'::regclass AND attname = 'call_sid' AND NOT attisdropped
    )
"""

MIGRATION = Migration(
    version=1,
    name="add_call_sid_column",
    upgrade=[
        Sql("ALTER TABLE calls ADD COLUMN IF NOT EXISTS call_sid text"),
        Sql(
            """
            ALTER TABLE calls ALTER COLUMN call_sid
                SET DEFAULT ('cs_' || replace(gen_random_uuid()::text, '-', ''))
            """
        ),
    ],
    downgrade=[
        Sql(
            """
            -- Rolling back 001: old code never names call_sid, so losing the default
            -- and the column breaks nothing it does. Catalog-only, no rewrite.
            -- squawk-ignore ban-drop-default
            ALTER TABLE calls ALTER COLUMN call_sid DROP DEFAULT
            """,
            # Undoing a failed upgrade may find no column at all.
            skip_if=COLUMN_MISSING,
        ),
        Sql(
            """
            -- squawk-ignore ban-drop-column
            ALTER TABLE calls DROP COLUMN IF EXISTS call_sid
            """
        ),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
