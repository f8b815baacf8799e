"""004: let ``calls.conversation_id`` be NULL (a call row exists before ElevenLabs answers).

The downgrade restores NOT NULL as 003 sets it, and only when no call lacks a
conversation_id; if some do, it says how many and changes nothing.
"""


def upgrade(db):
    """Drop NOT NULL; old code always writes conversation_id, so it is not affected."""
    db.drop_not_null("calls", "conversation_id")


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
    """Restore NOT NULL without a scan under an exclusive lock."""
    db.set_not_null("calls", "conversation_id")


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
