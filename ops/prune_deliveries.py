"""``python -m ops prune-deliveries --older-than-days N``: keep the delivery log bounded.

Old deliveries that are settled or badly signed (never replayable) go; those
still waiting for a replay stay however old: the log is their only copy.
"""

import psycopg

import db
from models import delete_in_batches
from models import webhook_deliveries as deliveries
from ops import database

OLD = "received_at < now() - make_interval(days => %(days)s)"
# Nothing left to do with it (replay_outcome is NULL until a replay).
DONE = """(outcome = ANY(%(done)s) OR coalesce(replay_outcome = ANY(%(done)s), false)
           OR outcome = %(bad_signature)s)"""
COUNTS = f"""
SELECT count(*) FILTER (WHERE {DONE}), count(*) FILTER (WHERE NOT {DONE})
  FROM webhook_deliveries
 WHERE {OLD}
"""
DELETE_BATCH = f"""
DELETE FROM webhook_deliveries
 WHERE id IN (SELECT id FROM webhook_deliveries
               WHERE {OLD} AND {DONE}
               ORDER BY id
               LIMIT %(batch)s
                 FOR UPDATE SKIP LOCKED)
"""


def prune(conn, days: int, *, batch: int, dry_run: bool, out=print) -> int:
    """Delete (or, dry, count) what the retention allows; return how many rows that is."""
    params = {
        "days": days,
        "done": list(deliveries.SETTLED),
        "bad_signature": deliveries.REJECTED_SIGNATURE,
        "batch": batch,
    }
    prunable, kept = conn.execute(COUNTS, params).fetchone()
    said = f"deliveries older than {days} days; {kept:,} kept (unsettled)"
    if dry_run:
        out(f"would delete {prunable:,} {said}")
        return prunable
    # A replay holding a row is skipped, not waited for: it goes at the next prune.
    total = delete_in_batches(
        conn, DELETE_BATCH, params, progress=lambda so_far: out(f"  deleted {so_far:,} so far")
    )
    out(f"deleted {total:,} {said}")
    return total


def main(argv: list[str]) -> int:
    """Run the retention; exit 2 when it cannot run."""
    parser = database.parser(
        "prune-deliveries", "Delete settled webhook deliveries older than N days, in batches."
    )
    parser.add_argument(
        "--older-than-days",
        type=database.bounded(int, 1, 36_500, "a number of days"),
        required=True,
        metavar="N",
    )
    parser.add_argument(
        "--batch",
        type=database.bounded(int, 1, 1_000_000, "a number of rows"),
        default=5_000,
        help="rows per transaction",
    )
    parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
    args = parser.parse_args(argv)
    url = db.url_of(args.database_url)
    with database.connect(url, "prune-deliveries") as conn:
        print(f"prune-deliveries on {database.describe(url)}")
        try:
            prune(conn, args.older_than_days, batch=args.batch, dry_run=args.dry_run)
        except psycopg.errors.UndefinedTable:
            raise database.CommandError(
                "no webhook_deliveries table (migration 006 not applied)"
            ) from None
    return 0
