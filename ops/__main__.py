"""``python -m ops <command>``: every operator command (``verify``, ``reconcile``, …)."""

import sys

from ops import backup, prune_deliveries, reconcile, replay, stuck_calls, verify

COMMANDS = {
    "verify": verify.main,
    "replay": replay.main,
    "stuck": stuck_calls.main,
    "reconcile": reconcile.main,
    "prune-deliveries": prune_deliveries.main,
    "backup": backup.main,
    "restore": backup.restore_main,
}


def main(argv: list[str]) -> int:
    """Dispatch to the named command."""
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m ops {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
