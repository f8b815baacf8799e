"""013: one transcript line stored once (contract: run after the new code is deployed).

The old code stores a retried line twice and would fail on this key, so 013 runs
once no old code runs. Extra copies are moved, not deleted, to
``transcriptions_duplicates_013`` (the oldest copy stays; copied in one read,
deleted in batches), then the UNIQUE index is built CONCURRENTLY:
an expression index, since a generated column would rewrite the table, and on
md5(message), since a btree entry holds at most ~2.7 kB. A copy arriving during
the build fails it; running 013 again moves it. The downgrade moves them back.
"""


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
        -- An upgrade stopped between its copy and its last delete batch left some
        -- copies in both tables: those are already back, the same row by id.
        WITH restored AS (DELETE FROM transcriptions_duplicates_013 RETURNING *)
        INSERT INTO transcriptions SELECT * FROM restored ON CONFLICT (id) DO NOTHING;
        -- squawk-ignore ban-drop-table
        DROP TABLE transcriptions_duplicates_013;
        """,
        unless="SELECT 1 WHERE to_regclass('transcriptions_duplicates_013') IS NULL",
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
