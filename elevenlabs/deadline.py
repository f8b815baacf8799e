"""A total deadline for one request through ``requests``, and an adapter that never retries.

requests' read timeout is per socket read: an answer dripping a byte a second
never trips it. One watchdog thread per process shuts down the connection a
request took once its deadline passes; the blocked read then fails at once and
urllib3 discards the connection. One thread, not a ``threading.Timer`` per
request: starting a thread per call cost call creation a tenth of its CPU.
"""

import contextlib
import heapq
import itertools
import socket
import threading
import time

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

# The deadline of the request this thread is making: the pool below tells it
# which connection the request took, so it can cut exactly that one.
_in_flight = threading.local()
# Deadlines due within this long of each other are cut on one wake-up: a cut
# may come this much late, and the watchdog wakes tens of times a second at
# most, not once per request.
SLACK_SECONDS = 0.05

_due = []  # heap of (due, n, Deadline); one that ended stays until due
_order = itertools.count()  # breaks ties, so Deadlines are never compared
_wake = threading.Condition()
_watchdog = None


class Deadline:
    """Cut the connection of this thread's request when ``seconds`` have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.connection = None
        self.expired = False
        self.over = False  # the request ended: nothing to cut

    def __enter__(self) -> "Deadline":
        global _watchdog
        _in_flight.deadline = self
        with _wake:
            if _watchdog is None or not _watchdog.is_alive():  # first use, or forked
                _due.clear()
                _watchdog = threading.Thread(target=_watch, name="deadlines", daemon=True)
                _watchdog.start()
            heapq.heappush(_due, (time.monotonic() + self.seconds, next(_order), self))
            if _due[0][2] is self:  # due before the one the watchdog waits for
                _wake.notify()
        return self

    def __exit__(self, *exc_info) -> None:
        _in_flight.deadline = None
        with _wake:  # so a cut cannot land on the connection once another request reuses it
            self.over, self.connection = True, None


def _watch() -> None:
    with _wake:
        while True:
            now = time.monotonic()
            while _due and _due[0][0] <= now:
                deadline = heapq.heappop(_due)[2]
                if not deadline.over:
                    deadline.expired = True
                    sock = getattr(deadline.connection, "sock", None)
                    if sock is not None:
                        with contextlib.suppress(OSError):  # already closed: the request is over
                            sock.shutdown(socket.SHUT_RDWR)
            _wake.wait(_due[0][0] - now + SLACK_SECONDS if _due else None)


class _Watched:
    """A urllib3 pool that hands the connection it gives out to this thread's deadline."""

    def _get_conn(self, timeout=None):
        connection = super()._get_conn(timeout)
        deadline = getattr(_in_flight, "deadline", None)
        if deadline is not None:
            deadline.connection = connection
        return connection


class _WatchedHTTP(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnectionPool):
    pass


class NoRetryAdapter(HTTPAdapter):
    """Zero retries, said out loud (urllib3 must not resend a request on its own); pools watched."""

    def __init__(self):
        super().__init__(max_retries=0, pool_maxsize=32)  # >= threads per worker

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTP, "https": _WatchedHTTPS}
