"""``python -m ops <command>``: every operator command (``verify``, ``reconcile``, …)."""

import sys

import psycopg

import config
import db
from errors import first_line
from ops import backup, prune_deliveries, reconcile, replay, stuck_calls, verify
from ops.database import CommandError

# Each command, and its exit status when it cannot run (verify's 1 means a check failed).
COMMANDS = {
    "verify": (verify.main, 2),
    "replay": (replay.main, 1),
    "stuck": (stuck_calls.main, 1),
    "reconcile": (reconcile.main, 1),
    "prune-deliveries": (prune_deliveries.main, 2),
    "backup": (backup.main, 1),
    "restore": (backup.restore_main, 1),
}


def main(argv: list[str]) -> int:
    """Run the named command; what stops it is one ``error:`` line on stderr."""
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m ops {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    command, cannot_run = COMMANDS[argv[0]]
    try:
        return command(argv[1:])
    except (CommandError, db.DatabaseUnavailable, config.ConfigError, OSError) as exc:
        message = first_line(exc)
    except psycopg.Error as exc:
        message = f"database: {first_line(exc)}"
    print(f"error: {message}", file=sys.stderr)
    return cannot_run


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
