"""``python -m ops verify``: the rollout checklist's database checks, one line each.

It leaves the database as it found it: every check but the uniqueness probe
reads, and the probe's transaction is always rolled back.
"""

from dataclasses import dataclass

import psycopg

import db
from errors import first_line
from ops import call_checks, database, lookup_checks, schema_checks
from ops.report import FAIL, Result, render
from ops.stuck_calls import MAX_MINUTES

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
    call_checks.webhook_deliveries,
]


@dataclass
class Options:
    """The command line: what to check, where, and the thresholds to judge by."""

    stage: str = "post"
    recent: int = 20
    stuck_minutes: int = 5
    window_minutes: int = 60
    max_rejection_rate: float = 0.05
    json: bool = False
    database_url: str | None = None


def _checked(check, conn, opts) -> Result:
    """Run one check in a savepoint, so a failing query hides no other; its error is its FAIL."""
    try:
        with conn.transaction():
            return Result(check.__name__, *check(conn, opts))
    except psycopg.Error as exc:
        return Result(check.__name__, FAIL, f"could not check: {first_line(exc)}")


def _read_only(conn, checks, opts) -> list[Result]:
    """Run checks in one READ ONLY, REPEATABLE READ transaction: one snapshot, nothing written."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # A migration holding ACCESS EXCLUSIVE must not make verify hang.
        conn.execute("SET LOCAL lock_timeout = '2s'")
        conn.execute("SET LOCAL statement_timeout = '60s'")
        return [_checked(check, conn, opts) for check in checks]


def run(conn: psycopg.Connection, opts: Options) -> list[Result]:
    """Run the stage's checks on an autocommit connection and return their results."""
    results = _read_only(conn, PRE, opts)
    results.append(_checked(schema_checks.unique_rejects_duplicate, conn, opts))
    if opts.stage == "post":
        results += _read_only(conn, POST, opts)
    return results


def main(argv: list[str]) -> int:
    """Exit 0 when all pass (or warn), 1 on any FAIL."""
    parser = database.parser(
        "verify", "Check a database against the rollout checklist; exit 1 on any FAIL."
    )
    parser.add_argument(
        "--stage",
        choices=["pre", "post"],
        help="pre: before the code deploy (schema only); post: everything",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.add_argument(
        "--recent",
        type=database.bounded(int, 1, 10_000, "a number of calls"),
        metavar="N",
        help="how many of the latest calls to inspect (%(default)s)",
    )
    parser.add_argument(
        "--stuck-minutes",
        type=database.bounded(int, 1, MAX_MINUTES, "a number of minutes"),
        metavar="M",
        help="'initiating' longer than this is stuck (%(default)s)",
    )
    parser.add_argument(
        "--max-rejection-rate",
        type=database.bounded(float, 0, 1, "a share of deliveries"),
        metavar="RATE",
        help="share of rejected webhook deliveries above which to warn (%(default)s)",
    )
    parser.set_defaults(**vars(Options()))  # after the arguments: their help shows the defaults
    opts = Options(**vars(parser.parse_args(argv)))
    url = db.url_of(opts.database_url)
    with database.connect(url, "verify") as conn:
        results = run(conn, opts)
    print(render(results, stage=opts.stage, target=database.describe(url), as_json=opts.json))
    return 1 if any(r.status == FAIL for r in results) else 0
