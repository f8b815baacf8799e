"""``python -m ops replay --since TIME | --delivery ID [--dry-run]``: rejected webhook deliveries,
replayed through the endpoints' own code once their cause is fixed (idempotent; the outcome at
receipt stays in the log, the replay's beside it)."""

import argparse
from datetime import datetime
from decimal import Decimal

import config
from models import webhook_deliveries as deliveries
from models.calls import BIGINT_MAX
from models.webhook_deliveries import Delivery
from observability import metrics
from ops import database
from webhooks import apply


def parse_since(value: str) -> datetime:
    """Return an aware datetime from ISO 8601 with a zone (e.g. 2026-11-25T10:00Z)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {value}Z")
    return moment


def refusal(delivery: Delivery) -> tuple[str, bool] | None:
    """Return why a delivery is not replayed and whether that is fine, or None to replay it."""
    if delivery.outcome in deliveries.SETTLED or delivery.replay_outcome in deliveries.SETTLED:
        settled = delivery.replay_outcome or delivery.outcome
        return f"already settled ({settled}); nothing to do", True
    if delivery.signature_valid is False:
        return (
            "its signature was not valid: never replayed (not known to come from ElevenLabs)",
            False,
        )
    if delivery.body_truncated:
        return f"its body was truncated ({delivery.body_size} bytes sent); cannot replay", False
    return None


class NoSuchDelivery(LookupError):
    """No delivery has this id."""


# Where a delivery stands after its turn: the last line's counts.
SETTLED, WOULD_REPLAY, NOT_SETTLED = "settled", "would replay", "not settled"


def replay_one(
    conn, delivery_id: int, *, dry_run: bool = False, usd_per_credit: Decimal | None = None
) -> tuple[str, str]:
    """Replay one delivery under a row lock; return a line to print and where it stands."""
    with conn.transaction():
        delivery = deliveries.lock(conn, delivery_id) if delivery_id <= BIGINT_MAX else None
        if delivery is None:
            raise NoSuchDelivery(delivery_id)
        label = f"delivery {delivery.id} ({delivery.endpoint}, {delivery.outcome} at receipt)"
        refused = refusal(delivery)
        if refused is not None:
            return f"{label}: {refused[0]}", SETTLED if refused[1] else NOT_SETTLED
        if dry_run:
            return f"{label}: would replay; reason was: {delivery.reason}", WOULD_REPLAY
        outcome = apply.apply(
            conn, delivery.endpoint, bytes(delivery.body), usd_per_credit=usd_per_credit
        )
        deliveries.record_replay(conn, delivery.id, outcome)
    metrics.record_ending(outcome)
    detail = f": {outcome.reason}" if outcome.reason else ""
    standing = SETTLED if outcome.outcome in deliveries.SETTLED else NOT_SETTLED
    return f"{label}: replayed, {outcome.outcome}{detail}", standing


def main(argv: list[str]) -> int:
    """Replay what was asked; exit 1 unless all of it is settled (dry run: or would be replayed)."""
    parser = database.parser("replay", "Replay rejected webhook deliveries from the log.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--since", type=parse_since, help="ISO 8601 time with a zone")
    which.add_argument("--delivery", type=int, help="a delivery id (webhook_deliveries.id)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    args = parser.parse_args(argv)
    price = config.from_env().get("ELEVENLABS_USD_PER_CREDIT")
    with database.connect(args.database_url, "replay") as conn:
        ids = (
            [args.delivery]
            if args.delivery is not None
            else deliveries.replay_candidates(conn, since=args.since)
        )
        if not ids:
            print(f"nothing to replay since {args.since.isoformat()}")
            return 0
        standings = []
        for each in ids:
            try:
                line, standing = replay_one(conn, each, dry_run=args.dry_run, usd_per_credit=price)
            except NoSuchDelivery:
                line, standing = f"delivery {each}: no such delivery", NOT_SETTLED
            standings.append(standing)
            print(line)
    settled, unsettled = standings.count(SETTLED), standings.count(NOT_SETTLED)
    if args.dry_run:
        print(
            f"{len(ids)} deliveries: {standings.count(WOULD_REPLAY)} would be replayed, "
            f"{settled} already settled, {unsettled} refused (dry run: nothing changed)"
        )
    else:
        print(f"{len(ids)} deliveries, {settled} settled, {unsettled} not")
    return 1 if unsettled else 0
