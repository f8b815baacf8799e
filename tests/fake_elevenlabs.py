"""A stand-in for ElevenLabs' outbound-call endpoint on a real local HTTP server.

``FakeElevenLabs`` wraps pytest-httpserver: tell it how to answer, and it keeps
every request it received (path, headers, JSON body) for the test to check.
Answer bodies are shaped after ElevenLabs' API reference and official SDK.
"""

import itertools
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug import Request, Response

OUTBOUND_CALL_PATH = "/v1/convai/twilio/outbound-call"

ANSWER_OK = {
    "success": True,
    "message": "Call initiated successfully",
    "conversation_id": "conv_01jx8k2m9q4r5s6t7v8w9x0y1z",
    "callSid": "CA1b2c3d4e5f60718293a4b5c6d7e8f901",
}
ANSWER_UNSUCCESSFUL = {
    "success": False,
    "message": "Failed to initiate call",
    "conversation_id": None,
    "callSid": None,
}
ERROR_401 = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
ERROR_422 = {
    "detail": [
        {
            "type": "missing",
            "loc": ["body", "agent_phone_number_id"],
            "msg": "Field required",
            "input": None,
        }
    ]
}
ERROR_429_CONCURRENCY = {
    "detail": {
        "status": "too_many_concurrent_requests",
        "message": "Too many concurrent requests for your plan",
    }
}
ERROR_429_BUSY = {
    "detail": {"status": "system_busy", "message": "The system is busy, try again later"}
}


@dataclass
class Received:
    """One request as the fake ElevenLabs server saw it."""

    path: str
    api_key: str | None
    body: dict | None

    @property
    def call_sid(self) -> str | None:
        """Return the call_sid passed as a dynamic variable, if any."""
        client_data = (self.body or {}).get("conversation_initiation_client_data") or {}
        return (client_data.get("dynamic_variables") or {}).get("call_sid")


class FakeElevenLabs:
    """ElevenLabs' outbound-call endpoint, answering as each test says."""

    def __init__(self, httpserver):
        self.server = httpserver
        self.base_url = httpserver.url_for("/").rstrip("/")
        self.received: list[Received] = []
        self._release = threading.Event()
        self._ids = itertools.count(1)

    def answer(
        self,
        body=ANSWER_OK,
        *,
        status: int = 200,
        raw: str | None = None,
        on_request: Callable[[Received], None] | None = None,
        hang: bool = False,
        fresh_ids: bool = False,
    ) -> None:
        """Answer every outbound call with ``body`` (or ``raw`` text) and ``status``.

        ``on_request`` runs while the request is held, before the answer: the
        moment to look at the database. ``hang`` holds the answer until
        ``release()``; ``fresh_ids`` gives each call its own conversation_id.
        """

        def handle(request: Request) -> Response:
            seen = Received(
                request.path, request.headers.get("xi-api-key"), request.get_json(silent=True)
            )
            self.received.append(seen)
            if on_request:
                on_request(seen)
            if hang:
                self._release.wait(timeout=30)
            if raw is not None:
                return Response(raw, status=status, content_type="text/html")
            answer = body
            if fresh_ids:
                n = next(self._ids)
                answer = {**body, "conversation_id": f"conv_{n:06d}", "callSid": f"CA{n:032x}"}
            return Response(json.dumps(answer), status=status, content_type="application/json")

        self.server.expect_request(OUTBOUND_CALL_PATH, method="POST").respond_with_handler(handle)

    def release(self) -> None:
        """Let a hanging answer go."""
        self._release.set()


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
