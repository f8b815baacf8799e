"""``python -m ops verify``: the rollout checklist's database checks, one line each.

Every check but one runs inside a single READ ONLY, REPEATABLE READ transaction
(one consistent snapshot), each in its own savepoint so that one failing query
cannot hide the others. The exception is the proof that the unique constraint
rejects a duplicate: it needs an INSERT, made in a transaction that is always
rolled back, with explicit ids so no sequence moves. The database is left as
it was found.
"""

import argparse
import sys
from dataclasses import dataclass

import psycopg

import db
from errors import first_line
from ops import call_checks, database, lookup_checks, probe, schema_checks, webhook_checks
from ops.report import FAIL, Result, as_json, as_text, failed

# Before the code deploy: the schema the four migrations leave.
PRE = [
    schema_checks.migrations,
    schema_checks.call_sid_column,
    schema_checks.call_sid_unique,
    schema_checks.invalid_indexes,
    schema_checks.calls_have_call_sid,
    lookup_checks.backfill,
    schema_checks.conversation_id_nullable,
    lookup_checks.call_sid_index_used,
    lookup_checks.transcript_lookup_plan,
]
# After it: what the new code writes, and how the webhooks fare.
POST = [
    call_checks.created_before_api_call,
    call_checks.recent_calls_have_call_sid,
    call_checks.recent_conversation_ids,
    call_checks.stuck_initiating,
    webhook_checks.deliveries,
]


@dataclass
class Options:
    """What to check and the thresholds to judge by."""

    stage: str = "post"
    recent: int = 20
    stuck_minutes: int = 5
    window_minutes: int = 60
    max_rejection_rate: float = 0.05


def _guarded(check, conn, opts) -> Result:
    """Run one read-only check in a savepoint; a database error is that check's FAIL."""
    name = check.__name__
    try:
        with conn.transaction():
            return check(conn, opts)
    except psycopg.Error as exc:
        return failed(name, f"could not check: {first_line(exc)}")


def _read_only(conn, checks, opts) -> list[Result]:
    conn.read_only = True
    try:
        with conn.transaction():
            # A migration holding ACCESS EXCLUSIVE must not make verify hang.
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SET LOCAL statement_timeout = '60s'")
            return [_guarded(check, conn, opts) for check in checks]
    finally:
        conn.read_only = False


def run(conn: psycopg.Connection, opts: Options) -> list[Result]:
    """Run the stage's checks on an autocommit connection and return their results."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    results = _read_only(conn, PRE, opts)
    try:
        results.append(probe.unique_rejects_duplicate(conn, opts))
    except psycopg.Error as exc:
        results.append(failed("unique_rejects_duplicate", f"could not check: {first_line(exc)}"))
    if opts.stage == "post":
        results += _read_only(conn, POST, opts)
    return results


def parse(argv) -> argparse.Namespace:
    """Parse ``verify``'s options."""
    parser = argparse.ArgumentParser(
        prog="python -m ops verify",
        description="Check a database against the rollout checklist; exit 1 on any FAIL.",
    )
    parser.add_argument(
        "--stage",
        choices=["pre", "post"],
        default="post",
        help="pre: before the code deploy (schema only); post: everything",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    database.add_argument(parser)
    parser.add_argument(
        "--recent",
        type=int,
        default=Options.recent,
        metavar="N",
        help="how many of the latest calls to inspect (default %(default)s)",
    )
    parser.add_argument(
        "--stuck-minutes",
        type=int,
        default=Options.stuck_minutes,
        metavar="M",
        help="'initiating' longer than this is stuck (default %(default)s)",
    )
    parser.add_argument(
        "--max-rejection-rate",
        type=float,
        metavar="RATE",
        default=Options.max_rejection_rate,
        help="webhook rejections above this share warn (default %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run verify from the command line: 0 all pass (or warn), 1 any FAIL, 2 cannot run."""
    args = parse(argv)
    opts = Options(
        args.stage, args.recent, args.stuck_minutes, max_rejection_rate=args.max_rejection_rate
    )
    try:
        url = db.url_of(args.database_url)
        with database.connect(url, "verify") as conn:
            results = run(conn, opts)
    except db.NoDatabase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: cannot connect to the database: {first_line(exc)}", file=sys.stderr)
        return 2
    render = as_json if args.json else as_text
    print(render(results, stage=args.stage, target=database.describe(url)))
    return 1 if any(r.status == FAIL for r in results) else 0
