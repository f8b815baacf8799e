"""002: give every existing call a call_sid, in primary-key batches.

Backfilled values are ``'legacy_' || id``: unique because ``id`` is, and
recognisable, so the downgrade clears exactly these. A re-run fills only what is still NULL.
"""


def upgrade(db):
    """Fill call_sid batch by batch, then print what is left."""
    db.backfill(
        "calls",
        """
        UPDATE calls SET call_sid = 'legacy_' || id
        WHERE id > %(after)s AND id <= %(upto)s AND call_sid IS NULL
        """,
        "calls backfilled",
    )
    db.report(
        "check",
        """
        SELECT format(
            '%s calls, %s without call_sid; %s with NULL driver_id, %s of them without',
            count(*),
            count(*) FILTER (WHERE call_sid IS NULL),
            count(*) FILTER (WHERE driver_id IS NULL),
            count(*) FILTER (WHERE driver_id IS NULL AND call_sid IS NULL)
        )
        FROM calls
        """,
    )


def downgrade(db):
    """Clear the values this migration wrote, and only those."""
    db.backfill(
        "calls",
        """
        UPDATE calls SET call_sid = NULL
        WHERE id > %(after)s AND id <= %(upto)s AND call_sid = 'legacy_' || id
        """,
        "backfilled call_sids cleared",
    )


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
