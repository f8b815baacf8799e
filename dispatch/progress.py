"""What the dispatch workers are doing, as figures for ``/metrics``: in flight vs cap, entries."""

import logging

import psycopg
from flask import current_app
from psycopg_pool import PoolTimeout

from db import get_conn
from dispatch.batches import ENTRY_STATES
from dispatch.rounds import NUMBERS_IN_FLIGHT
from errors import first_line
from observability import metrics

log = logging.getLogger(__name__)

OPEN_ENTRIES_BY_STATE = """
SELECT e.state, count(*) FROM call_batch_entries e
  JOIN call_batches b ON b.id = e.batch_id
 WHERE b.status IN ('pending', 'running')
 GROUP BY e.state
"""


def record_for_scrape() -> None:
    """Read calls in flight and open entries by state; a database failure keeps the last ones."""
    limits = current_app.extensions["dispatch_settings"]
    try:
        conn = get_conn()
        in_flight = len(conn.execute(NUMBERS_IN_FLIGHT, (limits.call_max_minutes * 60,)).fetchall())
        counts = dict(conn.execute(OPEN_ENTRIES_BY_STATE).fetchall())
    except (psycopg.Error, PoolTimeout) as exc:  # the metrics still answer; /healthz says why
        log.warning("dispatch figures not read for /metrics: %s", first_line(exc))
        return
    entries = {state: counts.get(state, 0) for state in ENTRY_STATES}
    metrics.record_dispatch_state(in_flight, limits.max_concurrent_calls, entries)
