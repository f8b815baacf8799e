"""001: add ``calls.call_sid``, nullable, with a default that generates a fresh one.

Two statements: a volatile default inside ADD COLUMN would rewrite the table
under ACCESS EXCLUSIVE; set afterwards it is catalog-only. Old code that never
names the column still inserts rows with a call_sid (the app's shape: ``cs_`` + 32 hex).
"""


def upgrade(db):
    """Add the column, then its default."""
    db.execute("ALTER TABLE calls ADD COLUMN IF NOT EXISTS call_sid text")
    db.execute(
        """
        ALTER TABLE calls ALTER COLUMN call_sid
            SET DEFAULT ('cs_' || replace(gen_random_uuid()::text, '-', ''))
        """
    )


def downgrade(db):
    """Drop the column (and its default with it): old code never names it. Catalog-only."""
    db.execute(
        """
        -- squawk-ignore ban-drop-column
        ALTER TABLE calls DROP COLUMN IF EXISTS call_sid
        """
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
