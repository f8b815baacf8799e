"""008: ``idempotency_keys``: each ``Idempotency-Key`` a client sent with a call request.

A key holds the fingerprint of the request that first used it, the call that
request created and, once known, the answer it got: a retry with the same key
gets that answer and never dials again. Keys are kept at least 24 hours.

A new table, created with its index in one short transaction (an empty table
blocks nobody). Old code never reads it; the downgrade drops it, and with it
only the power to replay an answer.
"""

VERSION, NAME = 8, "idempotency_keys"


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


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
