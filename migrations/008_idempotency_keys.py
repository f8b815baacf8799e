"""008: ``idempotency_keys``: a client's ``Idempotency-Key``, its request and its answer.

A new, empty table with its index in one short transaction; old code never
reads it, so the downgrade loses only the power to replay an answer.
"""


def upgrade(db):
    """Create the key table and its age index."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS idempotency_keys (
            key             text PRIMARY KEY,
            request_hash    text NOT NULL,
            call_sid        text NOT NULL,
            response_status bigint,
            response_body   jsonb,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS idempotency_keys_created_at_idx
            ON idempotency_keys (created_at);
        """
    )


def downgrade(db):
    """Drop the table (only the new code reads it, and it is rolled back first)."""
    db.execute(
        """
        -- squawk-ignore ban-drop-table
        DROP TABLE IF EXISTS idempotency_keys
        """
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
