"""Idle and dripping clients, held open while a test or bench asks something else of the server."""

import socket
import threading
from contextlib import ExitStack, contextmanager, suppress

from credentials import API_TOKEN

HALF_A_REQUEST_LINE = b"GET /healthz HT"
A_WHOLE_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n"
A_REQUEST_THEN_HALF_OF_ONE = A_WHOLE_REQUEST + HALF_A_REQUEST_LINE
HEAD_WITHOUT_ITS_END = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow:"
HEAD_OF_A_DRIPPED_BODY = (
    b"POST /driver_data/call-elevenlabs HTTP/1.1\r\nHost: slow\r\n"
    b"Authorization: Bearer " + API_TOKEN.encode() + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
)


@contextmanager
def idle_clients(port: int, count: int, sent: bytes = b"", once_answered: bytes = b""):
    """Hold ``count`` connections to ``port`` open, each having sent ``sent`` and then nothing.

    With ``once_answered``, each first reads an answer to ``sent``, then sends that.
    """
    with ExitStack() as stack:
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(sent)
            if once_answered:
                sock.recv(65536)
                sock.sendall(once_answered)
        yield


@contextmanager
def dripping_clients(port: int, count: int, heads=(HEAD_OF_A_DRIPPED_BODY, HEAD_WITHOUT_ITS_END)):
    """Keep ``count`` clients sending a byte every 0.2 s after one of ``heads``, in turn."""
    stopped = threading.Event()
    with ExitStack() as stack:
        socks = []
        for number in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(heads[number % len(heads)])
            socks.append(sock)

        def drip():
            while not stopped.wait(0.2):
                for sock in socks:
                    with suppress(OSError):  # closed by the server: it gave up on this client
                        sock.send(b" ")

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            yield
        finally:
            stopped.set()
            dripper.join(timeout=10)
