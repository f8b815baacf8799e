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


def before_downgrade(db):
    """Say how many calls lose a call_sid that 002 did not write, and how to export them first.

    Those are the new code's (and the default's): the API gave them to clients and
    ElevenLabs echoes them; a re-upgrade would give the calls ``legacy_<id>`` instead.
    Checked before 002's downgrade clears its ``legacy_<id>`` values (NULL is no loss).
    """
    if not db.value(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('calls') AND attname = 'call_sid'"
    ):
        return
    issued = "call_sid <> 'legacy_' || id"
    if count := db.value(f"SELECT count(*) FROM calls WHERE {issued}"):
        db.will_drop(
            f"the call_sid of {count:,} calls not backfilled by 002 (what the API gave clients "
            "for them)",
            f"SELECT id, call_sid, conversation_id FROM calls WHERE {issued}",
            "calls-call-sid-001",
            # Said, not asked: dropping the column is what rolling 001 back is for, and
            # the deployment checklist runs this script without --yes.
            ask=False,
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
