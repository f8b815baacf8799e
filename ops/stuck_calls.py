"""``python -m ops stuck --older-than 10``: calls stuck in ``initiating`` (a process died
mid-call; the driver may or may not have been rung), to check in ElevenLabs' call history."""

from models import calls
from ops import database

MAX_MINUTES = 365 * 24 * 60  # a year: an age past it is a typo, not a stuck call
minutes_argument = database.bounded(float, 0, MAX_MINUTES, "a number of minutes")


def main(argv: list[str]) -> int:
    """Print the calls stuck in ``initiating``, oldest first."""
    parser = database.parser("stuck", "List the calls stuck in initiating, oldest first.")
    parser.add_argument(
        "--older-than", type=minutes_argument, default=10.0, metavar="MINUTES", help="default: 10"
    )
    parser.add_argument(
        "--limit",
        type=database.bounded(int, 1, 100_000, "a number of calls"),
        default=100,
        help="default: 100",
    )
    args = parser.parse_args(argv)
    with database.connect(args.database_url, "stuck") as conn:
        rows = calls.stuck_initiating(conn, older_than_minutes=args.older_than, limit=args.limit)
        now = conn.execute("SELECT now()").fetchone()[0]  # the database's clock, as created_at
    if not rows:
        print(f"no calls stuck in initiating for more than {args.older_than:g} minutes")
        return 0
    print(f"{'call_sid':<36}  {'driver_id':>10}  {'created_at':<25}  age")
    for call in rows:
        created = call.created_at.isoformat(timespec="seconds")
        driver = "-" if call.driver_id is None else str(call.driver_id)
        hours, minutes = divmod(int((now - call.created_at).total_seconds() // 60), 60)
        days, hours = divmod(hours, 24)
        age = f"{days}d{hours:02d}h{minutes:02d}m" if days else f"{hours}h{minutes:02d}m"
        print(f"{call.call_sid:<36}  {driver:>10}  {created:<25}  {age}")
    more = " (limit reached; raise --limit to see more)" if len(rows) == args.limit else ""
    print(f"{len(rows)} call(s) stuck in initiating{more}")
    return 0
