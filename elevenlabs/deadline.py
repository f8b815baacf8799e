"""A total deadline for one request through ``requests``, and an adapter that never retries.

requests' read timeout is per socket read: an answer dripping a byte a second
never trips it. ``Deadline`` has one watchdog thread per process cut the
connection its thread's request took once its time is up; the blocked read then
fails at once, and urllib3 discards the connection instead of reusing it.

One watchdog rather than a ``threading.Timer`` per request: starting and
stopping a thread for every call cost call creation about a tenth of its CPU.
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
# Deadlines due within this long of each other are checked on one wake-up: a
# cut may come this much late, and the watchdog wakes tens of times a second at
# most, not once per request.
SLACK_SECONDS = 0.05


class Deadline:
    """Cut the connection of this thread's request when ``seconds`` have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.connection = None
        self.expired = False
        self.over = False  # the request ended: nothing to cut

    def _cut(self) -> None:
        self.expired = True
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            # The blocked read returns at once and urllib3 discards the connection;
            # already closed means the request is over anyway.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "Deadline":
        _in_flight.deadline = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _in_flight.deadline = None
        _WATCHDOG.forget(self)


class _Watchdog:
    """One thread that cuts every request still running at its deadline."""

    def __init__(self):
        self._due = []  # heap of (due, n, Deadline); one that ended stays until due
        self._n = itertools.count()  # breaks ties, so Deadlines are never compared
        self._wake = threading.Condition()
        self._thread = None

    def watch(self, deadline: Deadline) -> None:
        """Cut ``deadline``'s connection when its time is up, unless it is forgotten first."""
        with self._wake:
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._due.clear()
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            due = time.monotonic() + deadline.seconds
            heapq.heappush(self._due, (due, next(self._n), deadline))
            if self._due[0][2] is deadline:  # due before the one the watchdog waits for
                self._wake.notify()

    def forget(self, deadline: Deadline) -> None:
        """Leave ``deadline``'s request alone: it is over (its connection may serve another)."""
        with self._wake:  # so a cut cannot land on the connection once it is reused
            deadline.over, deadline.connection = True, None

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    deadline = heapq.heappop(self._due)[2]
                    if not deadline.over:
                        deadline._cut()
                wait = self._due[0][0] - now + SLACK_SECONDS if self._due else None
                self._wake.wait(wait)


_WATCHDOG = _Watchdog()


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
        """Build urllib3's pool manager with pools a deadline can cut."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTP, "https": _WatchedHTTPS}
