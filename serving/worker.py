"""gunicorn's gthread worker, but a connection gets a thread only once its request head is whole.

Read against gunicorn 27.0.1 (workers/gthread.py); README, "Idle and slow clients",
says why. Every new or kept-alive connection waits among gunicorn's ``pending_conns``
(with their keepalive timeout, and polled through a graceful stop) while its head
is gathered; gunicorn's own code takes over once the head ends. Its close of a
deferred connection at stop (finish_request on _DEFER) is never taken: no
connection reaches a thread before its data.
"""

import errno
import selectors
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

END_OF_HEAD = b"\r\n\r\n"
READ_SIZE = 64 * 1024
# More than the largest head gunicorn's parser accepts by default (a 4094-byte
# request line and 100 fields of 8190 bytes), so a head this long is refused by
# the parser from what is already gathered.
HEAD_LIMIT = 1024 * 1024


class ParkingWorker(ThreadWorker):
    """A gthread worker that parks connections on its poller until their request head arrives."""

    @classmethod
    def check_config(cls, cfg, log):
        """Refuse TLS and HTTP/2 prior knowledge: both read the socket before the parser does."""
        super().check_config(cfg, log)
        if cfg.is_ssl or cfg.http2_cleartext in ("prior-knowledge", "both"):
            raise RuntimeError("ParkingWorker serves plain HTTP/1.1; end TLS at the proxy")

    def accept(self, listener):
        """Accept a connection and park it until its request head arrives."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.head = bytearray()
        self.park(conn)
        self.on_pending_socket_readable(conn, client_sock)  # the request may be there already

    def park(self, conn):
        """Let ``conn`` wait on the poller for its request head, keepalive seconds at most."""
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def on_client_socket_readable(self, conn, client):
        """Gather a kept-alive connection's next request head as a new one's."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.park(conn)
        self.on_pending_socket_readable(conn, client)

    def on_pending_socket_readable(self, conn, client):
        """Read what arrived; give ``conn`` a thread once its head ends or its client is gone."""
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # reset: the thread meets it again and closes the connection
            data = b""
        conn.head += data
        if data and END_OF_HEAD not in conn.head[-len(data) - 3 :] and len(conn.head) < HEAD_LIMIT:
            return
        super().on_pending_socket_readable(conn, client)

    def handle(self, conn):
        """Serve the request with the gathered head put back before the socket's next bytes."""
        if conn.head:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(conn.head))
            conn.head = bytearray()
        keep_alive = super().handle(conn)
        if keep_alive is True and END_OF_HEAD not in conn.parser.unreader.buf.getvalue():
            # The next request, pipelined, was read ahead in part: gather the
            # rest on the poller too, else parsing it would wait in this thread.
            conn.head = bytearray(conn.parser.unreader.take_buffered())
        return keep_alive
