"""Wire-level faults ElevenLabs' simulator cannot make: a refused connection, a dropped one."""

import socket
import threading


def refusing_address() -> tuple[socket.socket, str]:
    """Return a bound socket that does not listen, and its base URL: connections are refused.

    Keep the socket open while it is used, so no other process can take the port.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


class DroppingServer:
    """A TCP server that reads a request and closes the connection without answering."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)  # so the serving thread notices close() promptly
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # the socket was closed under us: stop serving
                return
            with conn:
                conn.settimeout(5)
                if conn.recv(65536):
                    self.requests += 1

    def close(self) -> None:
        """Stop serving."""
        self._closing.set()
        self._thread.join(timeout=5)
        self.sock.close()
