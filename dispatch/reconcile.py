"""The hook the worker's periodic reconcile task calls: ``ops.reconcile`` every minute.

Calls open longer than ``CALL_MAX_MINUTES`` (no longer holding a slot) are settled
from ElevenLabs' conversation API. Entries wait for it: one whose call is still
``initiating`` or ``initiated`` is never redialled (``dispatch/settling.py``).
"""

import logging

from elevenlabs.conversations import Conversations
from ops.reconcile import reconcile

log = logging.getLogger(__name__)


def reconcile_open_calls(worker) -> None:
    """Settle the calls open past CALL_MAX_MINUTES; each line said goes to the log."""
    service = worker.defaults
    with worker.pool.connection() as conn:
        reconcile(
            conn,
            Conversations(worker.client, service["ELEVENLABS_BASE_URL"]),
            worker.settings.call_max_minutes,
            out=log.info,
            usd_per_credit=service.get("ELEVENLABS_USD_PER_CREDIT"),
        )
