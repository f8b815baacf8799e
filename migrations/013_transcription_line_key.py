"""013: one transcript line stored once (contract: run after the new code is deployed).

``transcriptions_line_key`` is a UNIQUE index on (conversation_id, speaker,
"timestamp", md5(message)), built CONCURRENTLY so webhooks keep writing; an
expression index because a generated column would rewrite the table under
ACCESS EXCLUSIVE, and md5 because a btree entry holds at most ~2.7 kB.

The old code stores a retried webhook line twice, and would fail on this key:
so 013 runs only once no old code runs, and is rolled back before old code
comes back. The copies it finds are moved, not deleted, to
``transcriptions_duplicates_013`` (the oldest copy stays): copied in one read,
then deleted from ``transcriptions`` in batches. A copy that arrives while the
key builds makes the build fail: running 013 again moves it and builds the key.
The downgrade moves the copies back.
"""

VERSION, NAME = 13, "transcription_line_key"

NO_DUPLICATES_TABLE = "SELECT 1 WHERE to_regclass('transcriptions_duplicates_013') IS NULL"


def upgrade(db):
    """Move every extra copy of a line aside, then build the unique key."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS transcriptions_duplicates_013
            (LIKE transcriptions, PRIMARY KEY (id))
        """
    )
    db.execute(
        """
        INSERT INTO transcriptions_duplicates_013
        SELECT * FROM transcriptions WHERE id IN (
            SELECT id FROM (
                SELECT id, row_number() OVER (
                    PARTITION BY conversation_id, speaker, "timestamp", md5(message) ORDER BY id
                ) AS copy
                FROM transcriptions
            ) AS numbered
            WHERE copy > 1
        )
        ON CONFLICT (id) DO NOTHING
        """,
        timeout="1h",  # one read of the whole table; it blocks no writer
    )
    db.backfill(
        "transcriptions_duplicates_013",
        """
        DELETE FROM transcriptions
        WHERE id IN (SELECT id FROM transcriptions_duplicates_013
                     WHERE id > %(after)s AND id <= %(upto)s)
        """,
        "duplicate copies moved aside",
    )
    db.report(
        "duplicate copies set aside (the first copy of each line stays in transcriptions)",
        """
        SELECT format(
            '%s copies of %s lines in transcriptions_duplicates_013', count(*),
            count(DISTINCT (conversation_id, speaker, "timestamp", md5(message))))
        FROM transcriptions_duplicates_013
        """,
    )
    db.create_index(
        "transcriptions_line_key",
        """
        CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS transcriptions_line_key
            ON transcriptions (conversation_id, speaker, "timestamp", md5(message))
        """,
    )


def downgrade(db):
    """Drop the key, then put the copies back (before old code, which writes them, returns)."""
    db.drop_index("transcriptions_line_key")
    db.execute(
        """
        WITH restored AS (DELETE FROM transcriptions_duplicates_013 RETURNING *)
        INSERT INTO transcriptions SELECT * FROM restored;
        -- squawk-ignore ban-drop-table
        DROP TABLE transcriptions_duplicates_013;
        """,
        unless=NO_DUPLICATES_TABLE,
    )


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
