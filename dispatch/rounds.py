"""One pass of the dispatch worker, and the loop a worker's task runs.

A round settles entries whose calls ended, claims what may be dialled now, and
dials each claimed entry (a few at a time: ElevenLabs' answer takes a moment).
``now`` is passed in, so tests move the clock instead of waiting for it.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from psycopg_pool import ConnectionPool

from dispatch.claims import Claim, claim
from dispatch.placing import dial
from dispatch.settings import DispatchSettings
from dispatch.settling import record_dial, settle
from elevenlabs.client import ElevenLabsClient

DIALS_AT_ONCE = 8  # per worker; the cap across workers is MAX_CONCURRENT_CALLS
PAUSE_SECONDS = 0.2  # between rounds while every slot is taken

DUE_NOW = """
SELECT count(*) FROM call_batch_entries e JOIN call_batches b ON b.id = e.batch_id
 WHERE e.state IN ('queued', 'waiting_window', 'redial_scheduled')
   AND e.next_attempt_at <= %s AND b.status IN ('pending', 'running')
"""


@dataclass(frozen=True)
class Worker:
    """What a round needs: the pool, the ElevenLabs client, the settings, the default agent."""

    pool: ConnectionPool
    client: ElevenLabsClient
    settings: DispatchSettings
    defaults: dict


def run_round(worker: Worker, now: datetime | None = None) -> int:
    """Settle, claim and dial once; return how many calls were dialled."""
    now = now or datetime.now(UTC)
    with worker.pool.connection() as conn:
        settle(conn, now)
        claimed = claim(conn, worker.settings, worker.defaults, now, limit=DIALS_AT_ONCE)
    if claimed:
        with ThreadPoolExecutor(max_workers=len(claimed)) as dials:
            list(dials.map(lambda one: dial_claim(worker, one, now), claimed))
    return len(claimed)


def dial_claim(worker: Worker, claimed: Claim, now: datetime) -> None:
    """Dial one claimed entry and move it on; no pooled connection waits on ElevenLabs."""
    with worker.pool.connection() as conn:
        # Read after the row's commit and before the request: created_at <= api_called_at
        # then compares two readings of one clock.
        called_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    with ExitStack() as held:
        connect = cache(lambda: held.enter_context(worker.pool.connection()))
        placed = dial(connect, worker.client, claimed.call, claimed.order, called_at)
        record_dial(connect(), claimed.entry_id, claimed.backoffs, placed, now)


def dispatch_until_idle(worker: Worker, max_seconds: float) -> int:
    """Run rounds while entries are due, for at most ``max_seconds``; return the dials."""
    deadline, dialled = time.monotonic() + max_seconds, 0
    while time.monotonic() < deadline:
        done = run_round(worker)
        dialled += done
        if not done:
            with worker.pool.connection() as conn:
                if not conn.execute(DUE_NOW, (datetime.now(UTC),)).fetchone()[0]:
                    break
            time.sleep(PAUSE_SECONDS)  # every slot taken: wait for a call to end
    return dialled
