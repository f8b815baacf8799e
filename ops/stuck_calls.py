"""``python -m ops stuck --older-than 10``: calls stuck in ``initiating``.

A call stays ``initiating`` only if the process died between writing the row
and hearing back from ElevenLabs; the driver may or may not have been rung.
This lists such calls so someone can check them in ElevenLabs' call history.
"""

import argparse
import sys
from datetime import timedelta

import psycopg

import db
from errors import first_line
from models import calls
from ops import database


def stuck(conn, older_than_minutes: float, limit: int, out=print) -> int:
    """Print the calls stuck in ``initiating``, oldest first; return how many."""
    rows = calls.stuck_initiating(conn, older_than_minutes=older_than_minutes, limit=limit)
    if not rows:
        out(f"no calls stuck in initiating for more than {older_than_minutes:g} minutes")
        return 0
    now = conn.execute("SELECT now()").fetchone()[0]  # the database's clock, as created_at
    out(f"{'call_sid':<36}  {'driver_id':>10}  {'created_at':<25}  age")
    for call in rows:
        created = call.created_at.isoformat(timespec="seconds")
        driver = "-" if call.driver_id is None else str(call.driver_id)
        out(f"{call.call_sid:<36}  {driver:>10}  {created:<25}  {_age(now - call.created_at)}")
    more = " (limit reached; raise --limit to see more)" if len(rows) == limit else ""
    out(f"{len(rows)} call(s) stuck in initiating{more}")
    return len(rows)


def _age(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h{minutes:02d}m" if days else f"{hours}h{minutes:02d}m"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m ops stuck", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--older-than", type=minutes_argument, default=10.0, metavar="MINUTES", help="default: 10"
    )
    parser.add_argument("--limit", type=_positive_int, default=100, help="default: 100")
    database.add_argument(parser)
    args = parser.parse_args(argv)
    try:
        with database.connect(db.url_of(args.database_url), "stuck") as conn:
            stuck(conn, args.older_than, args.limit)
    except (db.NoDatabase, psycopg.Error) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    return 0


def minutes_argument(text: str) -> float:
    """Return a number of minutes from the command line (0 or more), or say why not."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"minutes must be 0 or more: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
