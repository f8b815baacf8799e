"""002: give every existing call a call_sid, in primary-key batches.

Backfilled values are ``'legacy_' || id``: unique because ``id`` is, and
recognisable, so the downgrade clears exactly these and nothing the app wrote.
Rows with a NULL ``driver_id`` are backfilled like any other (nothing here
looks at ``driver_id``). A re-run fills only what is still NULL.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, main
from migrations.steps import Backfill, Report

MIGRATION = Migration(
    version=2,
    name="backfill_call_sid",
    upgrade=[
        Backfill(
            table="calls",
            update="""
                UPDATE calls SET call_sid = 'legacy_' || id
                WHERE id > %(after)s AND id <= %(upto)s AND call_sid IS NULL
            """,
            what="calls backfilled",
        ),
        Report(
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
        ),
    ],
    downgrade=[
        Backfill(
            table="calls",
            update="""
                UPDATE calls SET call_sid = NULL
                WHERE id > %(after)s AND id <= %(upto)s AND call_sid = 'legacy_' || id
            """,
            what="backfilled call_sids cleared",
        ),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
