"""001: add ``calls.call_sid``, nullable, with a default that generates a fresh one.

Two statements: a volatile default inside ADD COLUMN would rewrite the whole
table under ACCESS EXCLUSIVE; set afterwards it is catalog-only, and old code
that never names the column still inserts rows with a valid call_sid (the app
makes the same shape in Python: ``"cs_" + secrets.token_hex(16)``).
"""

VERSION, NAME = 1, "add_call_sid_column"


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


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
