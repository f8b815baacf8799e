"""``python -m ops prune-deliveries --older-than-days N``: keep the delivery log bounded.

Every webhook delivery is recorded, bodies included, so the table grows with
traffic. What is deleted: deliveries received more than N days ago that are
settled (saved, duplicate, acknowledged, stale — at receipt or by a replay) or
that were refused for their signature (never replayable). What is kept, however
old: deliveries still waiting for a replay, since the log is their only copy;
the command says how many.

Deletes run in batches of ``--batch`` rows, each its own short transaction under
a lock timeout, so webhooks keep being recorded meanwhile; ``--dry-run`` counts
and changes nothing. Exit status: 0 done, 2 cannot run.
"""

import argparse
import sys

import psycopg

import db
from errors import first_line
from models import webhook_deliveries as deliveries
from ops import database

# Old enough, and nothing left to do with it.
PRUNABLE = """
    received_at < now() - make_interval(days => %(days)s)
    AND (outcome = ANY(%(done)s) OR replay_outcome = ANY(%(done)s)
         OR outcome = %(bad_signature)s)
"""
KEPT = """
    received_at < now() - make_interval(days => %(days)s)
    AND NOT (outcome = ANY(%(done)s) OR coalesce(replay_outcome = ANY(%(done)s), false)
             OR outcome = %(bad_signature)s)
"""
DELETE_BATCH = f"""
DELETE FROM webhook_deliveries
 WHERE id IN (SELECT id FROM webhook_deliveries
               WHERE {PRUNABLE}
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
    kept = conn.execute(f"SELECT count(*) FROM webhook_deliveries WHERE {KEPT}", params)
    kept = kept.fetchone()[0]
    if dry_run:
        count = conn.execute(f"SELECT count(*) FROM webhook_deliveries WHERE {PRUNABLE}", params)
        total = count.fetchone()[0]
        out(f"would delete {total:,} deliveries older than {days} days; {kept:,} kept (unsettled)")
        return total
    total = 0
    while True:
        with conn.transaction():
            # A replay holding a row is skipped, not waited for; a DDL lock is waited 2 s at most.
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SET LOCAL statement_timeout = '60s'")
            deleted = conn.execute(DELETE_BATCH, params).rowcount
        total += deleted
        if deleted < batch:
            break
        out(f"  deleted {total:,} so far")
    out(f"deleted {total:,} deliveries older than {days} days; {kept:,} kept (unsettled)")
    return total


def parse(argv) -> argparse.Namespace:
    """Parse ``prune-deliveries``' options."""
    parser = argparse.ArgumentParser(
        prog="python -m ops prune-deliveries",
        description="Delete settled webhook deliveries older than N days, in batches.",
    )
    parser.add_argument("--older-than-days", type=int, required=True, metavar="N")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
    database.add_argument(parser)
    args = parser.parse_args(argv)
    if args.older_than_days < 1:
        parser.error("--older-than-days must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    return args


def main(argv=None) -> int:
    """Run the retention from the command line."""
    args = parse(argv)
    try:
        url = db.url_of(args.database_url)
        with database.connect(url, "prune-deliveries") as conn:
            print(f"prune-deliveries on {database.describe(url)}")
            prune(conn, args.older_than_days, batch=args.batch, dry_run=args.dry_run)
    except db.NoDatabase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    except psycopg.errors.UndefinedTable:
        print("error: no webhook_deliveries table (migration 006 not applied)", file=sys.stderr)
        return 2
    return 0
