"""007: indexes for what operators ask of ``calls`` on a multi-million-row table.

- ``calls_driver_id_idx`` (driver_id, id): one driver's calls, newest first (the
  console's driver filter) without walking the whole primary key backwards;
- ``calls_initiating_created_at_idx``: calls still ``initiating`` (stuck when old:
  the process died between the insert and ElevenLabs' answer); a partial index,
  so it stays as small as the handful of calls in flight.

Both built CONCURRENTLY: writes go on during the build.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, main
from migrations.steps import ConcurrentIndex, DropIndexConcurrently

MIGRATION = Migration(
    version=7,
    name="call_lookup_indexes",
    upgrade=[
        ConcurrentIndex(
            "calls_driver_id_idx",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_driver_id_idx ON calls (driver_id, id)",
        ),
        ConcurrentIndex(
            "calls_initiating_created_at_idx",
            """
            CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_initiating_created_at_idx
                ON calls (created_at) WHERE status = 'initiating'
            """,
        ),
    ],
    downgrade=[
        DropIndexConcurrently("calls_initiating_created_at_idx"),
        DropIndexConcurrently("calls_driver_id_idx"),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
