"""Idempotency keys are kept 24 hours, not for ever: the worker prunes older ones hourly."""

import pytest
from batch_support import workers

from api import idempotency
from dispatch import tasks
from elevenlabs.simulator import ANSWER_OK

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123"}


@pytest.fixture
def worker(database_url, app_config, elevenlabs):
    """A dispatch worker of this process, its tasks pointed at it."""
    for make in workers(database_url, app_config, elevenlabs):  # closes its pool after
        tasks.use(make())
        yield
        tasks.use(None)


def key_aged(conn, key: str, hours: float) -> None:
    """Record ``key`` as first used ``hours`` ago."""
    conn.execute(
        "INSERT INTO idempotency_keys (key, request_hash, call_sid, created_at) "
        "VALUES (%s, 'h', 'cs_x', now() - make_interval(secs => %s))",
        (key, hours * 3600),
    )


def keys(conn) -> set[str]:
    return {row[0] for row in conn.execute("SELECT key FROM idempotency_keys")}


def test_keys_older_than_24_hours_go_and_younger_ones_stay(conn):
    for number in range(5):
        key_aged(conn, f"old-{number}", 24.1 + number)
    key_aged(conn, "almost-a-day", 23.9)
    key_aged(conn, "fresh", 0)

    assert idempotency.prune(conn, batch=2) == 5  # three short transactions

    assert keys(conn) == {"almost-a-day", "fresh"}
    assert idempotency.prune(conn) == 0


def test_a_retry_within_24_hours_gets_the_first_answer_after_a_prune(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    headers = {**auth_headers, "Idempotency-Key": "order-9"}
    first = client.post("/driver_data/call-elevenlabs", json=CALL_REQUEST, headers=headers)
    conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '23 hours 59 minutes'")

    idempotency.prune(conn)
    retry = client.post("/driver_data/call-elevenlabs", json=CALL_REQUEST, headers=headers)

    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(elevenlabs.received) == 1


def test_the_worker_prunes_expired_keys_every_hour(conn, worker):
    key_aged(conn, "yesterday", 25)
    key_aged(conn, "this-morning", 3)
    periodic = {
        entry.task.name: entry.cron for entry in tasks.app.periodic_registry.periodic_tasks.values()
    }

    assert periodic["prune-idempotency-keys"] == "7 * * * *"
    assert tasks.prune_idempotency_keys(timestamp=0) == 1
    assert keys(conn) == {"this-morning"}
