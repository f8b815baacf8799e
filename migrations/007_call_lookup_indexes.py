"""007: operators' look-ups on ``calls``, built CONCURRENTLY (writes go on).

``calls_driver_id_idx``: one driver's calls, newest first; the partial
``calls_initiating_created_at_idx``: calls still ``initiating`` (stuck when old).
"""


def upgrade(db):
    """Build both indexes."""
    db.create_index(
        "calls_driver_id_idx",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_driver_id_idx ON calls (driver_id, id)",
    )
    db.create_index(
        "calls_initiating_created_at_idx",
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_initiating_created_at_idx
            ON calls (created_at) WHERE status = 'initiating'
        """,
    )


def downgrade(db):
    """Drop both indexes."""
    db.drop_index("calls_initiating_created_at_idx")
    db.drop_index("calls_driver_id_idx")


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
