"""The worker's tasks on procrastinate: dispatch, reconciliation, the overview's rollup, pruning.

Every worker defers the same periodic jobs: procrastinate makes each tick one job, and
``queueing_lock`` keeps at most one waiting. N workers may run N dispatch loops side by
side: the cap is held by the database (``rounds.claim``), not by how many loops run.
"""

import logging
import threading

import procrastinate

from api import idempotency
from console.hours import roll_up
from dispatch.rounds import Worker, dispatch_until_idle
from elevenlabs.conversations import Conversations
from ops.reconcile import Rotation
from ops.reconcile import reconcile as reconcile_calls

log = logging.getLogger(__name__)

# A dispatch job ends within this (a stopping worker waits for it); the next tick goes on.
DISPATCH_MAX_SECONDS = 10
# A reconcile run starts no look-up past this, so runs never pile up; the next minute's
# run goes on. One look-up may still take the client's timeouts on top.
RECONCILE_MAX_SECONDS = 50
# Jobs a worker runs at once: one reconcile run (``_reconciling``) and the others beside it.
CONCURRENCY = 2

app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=[__name__])
_worker: Worker | None = None  # set by ``python -m dispatch worker`` before it runs
# Where this process's last reconcile run stopped: the next one goes on from there.
_reconciled = Rotation()
# Held by this process's reconcile run: a tick due meanwhile (a run can outlast its minute)
# ends at once, so two runs never take both job slots. In-process, unlike a procrastinate
# lock, which a worker killed mid-run would leave held for good (its job stays "doing").
_reconciling = threading.Lock()


def use(worker: Worker) -> None:
    """Give the tasks the pool, ElevenLabs client and settings of this process."""
    global _worker, _reconciled
    _worker, _reconciled = worker, Rotation()


@app.periodic(cron="* * * * * */2")  # croniter's sixth field: every 2 seconds
@app.task(queueing_lock="dispatch", name="dispatch")
def dispatch(timestamp: int) -> int:
    """Dial every entry that is due, within the cap, until none is or the round ends."""
    dialled = dispatch_until_idle(_worker, DISPATCH_MAX_SECONDS)
    if dialled:
        log.info("dispatch dialled %d calls", dialled)
    return dialled


@app.periodic(cron="* * * * *")
@app.task(queueing_lock="reconcile", name="reconcile")
def reconcile(timestamp: int) -> None:
    """Settle calls open past CALL_MAX_MINUTES from ElevenLabs (``python -m ops reconcile``)."""
    if not _reconciling.acquire(blocking=False):
        log.info("reconcile: the last run is still going; it goes on, this one ends")
        return
    try:
        _reconcile()
    finally:
        _reconciling.release()


def _reconcile() -> None:
    """One run: from where the last one stopped, no look-up started after RECONCILE_MAX_SECONDS."""
    service = _worker.defaults
    with _worker.pool.connection() as conn:
        reconcile_calls(
            conn,
            Conversations(_worker.client, service["ELEVENLABS_BASE_URL"]),
            _worker.settings.call_max_minutes,
            out=log.info,
            usd_per_credit=service.get("ELEVENLABS_USD_PER_CREDIT"),
            budget_seconds=RECONCILE_MAX_SECONDS,
            rotation=_reconciled,
        )


@app.periodic(cron="* * * * *")
@app.task(queueing_lock="call-hours", name="roll-up-call-hours")
def roll_up_call_hours(timestamp: int) -> None:
    """Recount the console overview's closed hours of the last 7 days (``console.hours``)."""
    with _worker.pool.connection() as conn:
        roll_up(conn)


@app.periodic(cron="7 * * * *")
@app.task(queueing_lock="prune-idempotency-keys", name="prune-idempotency-keys")
def prune_idempotency_keys(timestamp: int) -> int:
    """Delete the Idempotency-Keys past their 24 hours, hourly."""
    with _worker.pool.connection() as conn:
        pruned = idempotency.prune(conn)
    if pruned:
        log.info("pruned %d idempotency keys", pruned)
    return pruned
