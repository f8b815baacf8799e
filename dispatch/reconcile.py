"""The hook the worker's periodic reconcile task calls.

Reconciliation (``python -m ops reconcile``: calls ``initiated`` or ``initiating``
too long are settled from ElevenLabs' conversation API) is built in ``ops/``;
until it is, this does nothing. Entries wait for it: one whose call is still
``initiating`` or ``initiated`` is never redialled (``dispatch/settling.py``).
"""


def reconcile_open_calls(worker) -> None:
    """Settle calls left open; a no-op until ``ops reconcile`` exists."""
    return None
