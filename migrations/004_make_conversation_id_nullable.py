"""004: let ``calls.conversation_id`` be NULL (a call row exists before ElevenLabs answers).

The downgrade restores NOT NULL the scan-free way 003 uses, and only when no
call lacks a conversation_id; if some do, it says how many and changes nothing.
"""

VERSION, NAME = 4, "make_conversation_id_nullable"

NOT_NULL_ALREADY = """
    SELECT 1 FROM pg_attribute
    WHERE attrelid = 'calls'::regclass AND attname = 'conversation_id' AND attnotnull
"""


def upgrade(db):
    """Drop NOT NULL (and a check a stopped downgrade may have left)."""
    db.execute(
        """
        -- squawk-ignore ban-drop-constraint
        ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_conversation_id_check_not_null
        """
    )
    db.execute(
        """
        -- The point of 004: new code writes the call row before ElevenLabs answers.
        -- Old code always writes conversation_id, so it is not affected.
        -- squawk-ignore ban-drop-not-null
        ALTER TABLE calls ALTER COLUMN conversation_id DROP NOT NULL
        """
    )


def before_downgrade(db):
    """Refuse, with the count, while calls without a conversation_id exist."""
    missing = db.value("SELECT count(*) FROM calls WHERE conversation_id IS NULL")
    if missing:
        db.refuse(
            f"cannot restore NOT NULL on calls.conversation_id: {missing} calls have no "
            "conversation_id (created by the new code before ElevenLabs answered, or failed); "
            "give them a conversation_id or delete them, then run the downgrade again; "
            "nothing changed"
        )


def downgrade(db):
    """SET NOT NULL via a validated CHECK, so it skips its scan; then drop the check."""
    db.execute(
        """
        ALTER TABLE calls ADD CONSTRAINT calls_conversation_id_check_not_null
            CHECK (conversation_id IS NOT NULL) NOT VALID
        """,
        unless=NOT_NULL_ALREADY
        + """
        UNION ALL SELECT 1 FROM pg_constraint
        WHERE conrelid = 'calls'::regclass AND conname = 'calls_conversation_id_check_not_null'
        """,
    )
    db.say("  calls_conversation_id_check_not_null is NOT VALID; validating it (writes go on)")
    db.execute(
        "ALTER TABLE calls VALIDATE CONSTRAINT calls_conversation_id_check_not_null",
        unless=NOT_NULL_ALREADY,
        timeout="1h",
    )
    db.execute("ALTER TABLE calls ALTER COLUMN conversation_id SET NOT NULL")
    db.execute(
        """
        -- squawk-ignore ban-drop-constraint
        ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_conversation_id_check_not_null
        """
    )


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
