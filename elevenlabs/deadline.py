"""A total deadline for one request through ``requests``, and an adapter that never retries.

requests' read timeout is per socket read: an answer dripping a byte a second
never trips it. ``Deadline`` cuts the connection its thread's request took once
its time is up; the blocked read then fails at once, and urllib3 discards the
connection instead of reusing it.
"""

import contextlib
import socket
import threading

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

# The deadline of the request this thread is making: the pool below tells it
# which connection the request took, so it can cut exactly that one.
_in_flight = threading.local()


class Deadline:
    """Cut the connection of this thread's request when ``seconds`` have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.connection = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

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
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        _in_flight.deadline = None


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
