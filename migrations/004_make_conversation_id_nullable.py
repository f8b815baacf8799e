"""004: let ``calls.conversation_id`` be NULL (a call row exists before ElevenLabs answers).

The downgrade restores NOT NULL only when no call lacks a conversation_id; if
some do, it says how many and what to do, and changes nothing.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Check, Migration, Sql, main
from migrations.steps import SetNotNull


def no_calls_without_conversation_id(conn) -> str | None:
    """Return why NOT NULL cannot come back (calls without a conversation_id), or None."""
    missing = conn.execute("SELECT count(*) FROM calls WHERE conversation_id IS NULL").fetchone()[0]
    if not missing:
        return None
    return (
        f"cannot restore NOT NULL on calls.conversation_id: {missing} calls have no "
        "conversation_id (created by the new code before ElevenLabs answered, or failed); "
        "give them a conversation_id or delete them, then run the downgrade again; nothing changed"
    )


MIGRATION = Migration(
    version=4,
    name="make_conversation_id_nullable",
    upgrade=[
        Sql(
            """
            -- The point of 004: new code writes the call row before ElevenLabs answers.
            -- Old code always writes conversation_id, so it is not affected.
            -- squawk-ignore ban-drop-not-null
            ALTER TABLE calls ALTER COLUMN conversation_id DROP NOT NULL
            """
        )
    ],
    downgrade=[
        Check(no_calls_without_conversation_id),
        SetNotNull("calls", "conversation_id"),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
