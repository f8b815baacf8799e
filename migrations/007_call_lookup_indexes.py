"""007: indexes for what operators ask of ``calls`` on a multi-million-row table.

- ``calls_driver_id_idx`` (driver_id, id): one driver's calls, newest first (the
  console's driver filter) without walking the whole primary key backwards;
- ``calls_initiating_created_at_idx``: calls still ``initiating`` (stuck when
  old); partial, so it stays as small as the calls in flight.

Both built CONCURRENTLY: writes go on during the build.
"""

VERSION, NAME = 7, "call_lookup_indexes"


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


if __name__ == "__main__":  # the command line: [upgrade|downgrade] [--database-url URL] [--yes]
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from migrations.migrate import script_main

    raise SystemExit(script_main(sys.modules[__name__]))
