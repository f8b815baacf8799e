"""The ElevenLabs client: the exact request, and one readable error per way it can fail."""

import contextlib
import socket
import threading
import time

import pytest
from wire_faults import DroppingServer, refusing_address

from elevenlabs.client import ElevenLabsClient, ElevenLabsError
from elevenlabs.conversations import Conversations, Unavailable
from elevenlabs.simulator import (
    ANSWER_OK,
    ANSWER_UNSUCCESSFUL,
    ERROR_401,
    ERROR_422,
    ERROR_429_BUSY,
    ERROR_429_CONCURRENCY,
    OUTBOUND_CALL_PATH,
)

CALL = {
    "agent_id": "agent_7f3c2d1e9b8a",
    "agent_phone_number_id": "phnum_5b2a9c0d",
    "to_number": "+14155550123",
    "dynamic_variables": {"call_sid": "cs_0123", "load_id": "L-77"},
}


def client_for(base_url: str, *, connect_timeout=2.0, read_timeout=2.0) -> ElevenLabsClient:
    return ElevenLabsClient(
        base_url, "xi_test_key", connect_timeout=connect_timeout, read_timeout=read_timeout
    )


def failure(base_url: str, **timeouts) -> ElevenLabsError:
    with pytest.raises(ElevenLabsError) as raised:
        client_for(base_url, **timeouts).outbound_call(**CALL)
    return raised.value


def test_outbound_call_sends_the_documented_request(elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    client_for(elevenlabs.base_url + "/").outbound_call(**CALL)

    [received] = elevenlabs.received
    assert received.path == OUTBOUND_CALL_PATH
    assert received.api_key == "xi_test_key"
    assert received.body == {
        "agent_id": "agent_7f3c2d1e9b8a",
        "agent_phone_number_id": "phnum_5b2a9c0d",
        "to_number": "+14155550123",
        "conversation_initiation_client_data": {
            "dynamic_variables": {"call_sid": "cs_0123", "load_id": "L-77"}
        },
    }


def test_conversation_reads_send_the_api_key(elevenlabs):
    reader = Conversations(client_for(elevenlabs.base_url), elevenlabs.base_url)
    with pytest.raises(Unavailable, match="HTTP 404"):
        reader.conversation("conv_unknown")

    [received] = elevenlabs.received
    assert received.api_key == "xi_test_key"


def test_accepted_call_returns_conversation_id_and_twilio_call_sid(elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    accepted = client_for(elevenlabs.base_url).outbound_call(**CALL)
    assert accepted.conversation_id == ANSWER_OK["conversation_id"]
    assert accepted.twilio_call_sid == ANSWER_OK["callSid"]
    assert accepted.message == "Call initiated successfully"


def test_accepted_call_may_have_no_conversation_id_yet(elevenlabs):
    elevenlabs.answer({"success": True, "message": "ok", "conversation_id": None, "callSid": ""})
    accepted = client_for(elevenlabs.base_url).outbound_call(**CALL)
    assert accepted.conversation_id is None
    assert accepted.twilio_call_sid is None


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (401, ERROR_401, "invalid_api_key", ["invalid_api_key", "Invalid API key"]),
        (422, ERROR_422, "validation_error", ["body.agent_phone_number_id: Field required"]),
        (429, ERROR_429_CONCURRENCY, "rate_limited", ["too_many_concurrent_requests"]),
        (429, ERROR_429_BUSY, "rate_limited", ["system_busy", "busy"]),
        (404, {"detail": "Not Found"}, "client_error", ["HTTP 404", "Not Found"]),
        (500, {"detail": "Internal Server Error"}, "server_error", ["HTTP 500", "may still"]),
        (503, None, "server_error", ["HTTP 503"]),
        (200, ANSWER_UNSUCCESSFUL, "unsuccessful", ["Failed to initiate call"]),
        (200, ["success"], "bad_response", ["unexpected JSON", "not an object"]),
        (200, {"message": "hi"}, "bad_response", ["no boolean 'success'"]),
        (200, {"success": True, "conversation_id": 7}, "bad_response", ["'conversation_id'"]),
        (307, None, "unexpected_status", ["HTTP 307"]),
    ],
)
def test_each_answer_that_is_not_a_placed_call_is_one_readable_error(
    elevenlabs, status, body, kind, words
):
    elevenlabs.answer(body, status=status)
    error = failure(elevenlabs.base_url)
    assert error.kind == kind
    for word in words:
        assert word in error.reason
    assert len(elevenlabs.received) == 1, "never retried"


def test_a_200_that_is_not_json_is_an_error_quoting_the_body(elevenlabs):
    elevenlabs.answer(raw="<html>Bad gateway</html>", status=200)
    error = failure(elevenlabs.base_url)
    assert error.kind == "bad_response"
    assert "not JSON" in error.reason
    assert "<html>Bad gateway</html>" in error.reason


def test_an_error_body_that_is_not_json_is_quoted(elevenlabs):
    elevenlabs.answer(raw="upstream connect error", status=502)
    error = failure(elevenlabs.base_url)
    assert error.kind == "server_error"
    assert "upstream connect error" in error.reason


def test_a_long_body_is_cut_in_the_reason(elevenlabs):
    elevenlabs.answer(raw="x" * 10_000, status=200)
    assert len(failure(elevenlabs.base_url).reason) < 400


def test_refused_connection_says_the_call_was_not_placed():
    sock, base_url = refusing_address()
    with sock:
        error = failure(base_url)
    assert error.kind == "connection_refused"
    assert "not placed" in error.reason
    assert error.may_have_dialled is False


def test_read_timeout_comes_within_the_timeout_and_warns_the_call_may_exist(elevenlabs):
    elevenlabs.answer(ANSWER_OK, hang=True)
    started = time.monotonic()
    error = failure(elevenlabs.base_url, read_timeout=0.3)
    assert time.monotonic() - started < 5  # the 0.3 s timeout, not the 20 s default
    assert error.kind == "read_timeout"
    assert "0.3s" in error.reason
    assert error.may_have_dialled is True
    elevenlabs.release()
    assert len(elevenlabs.received) == 1, "never retried"


def test_connect_timeout_is_told_apart_from_read_timeout():
    # A listener whose backlog is full drops new connection attempts: connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        time.sleep(0.1)
        started = time.monotonic()
        error = failure(f"http://127.0.0.1:{address[1]}", connect_timeout=0.3)
        assert time.monotonic() - started < 3  # the 0.3 s timeout, not the 5 s default
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert error.kind == "connect_timeout"
    assert "not placed" in error.reason


def test_connection_dropped_after_the_request_is_sent_is_not_retried():
    server = DroppingServer()
    try:
        error = failure(server.base_url)
    finally:
        server.close()
    assert error.kind == "connection_lost"
    assert error.may_have_dialled is True
    assert server.requests == 1, "never retried"


def test_unresolvable_host_says_the_call_was_not_placed():
    error = failure("http://elevenlabs.invalid")
    assert error.kind == "connection_failed"
    assert "not placed" in error.reason


class RawServer:
    """A TCP server that reads one request and answers with ``reply(conn)``, bytes as given."""

    def __init__(self, reply):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self._reply = reply
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: stop serving
                return
            with conn:
                conn.settimeout(30)
                if conn.recv(65536):
                    self.requests += 1
                    with contextlib.suppress(OSError):  # the client gave up first
                        self._reply(conn)

    def close(self) -> None:
        """Stop serving."""
        self.sock.close()


def _sends(data: bytes):
    return lambda conn: conn.sendall(data)


def _drips(head: bytes, every: float):
    def reply(conn):
        for byte in head:
            conn.sendall(bytes([byte]))
            time.sleep(every)

    return reply


CUT_OFF_ANSWERS = {
    "body_shorter_than_its_length": _sends(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"succ'
    ),
    "chunked_stream_cut": _sends(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'40\r\n{"success": true, "message"'
    ),
    "body_claiming_gzip": _sends(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b'Content-Length: 17\r\n\r\n{"success": true}'
    ),
    "status_line_then_nothing": _sends(b"HTTP/1.1 200 OK\r\n"),
    "garbage_instead_of_http": _sends(b"\x00\x01garbage\r\n\r\n"),
}


@pytest.mark.parametrize("answer", sorted(CUT_OFF_ANSWERS))
def test_an_answer_cut_off_after_the_request_was_sent_says_the_call_may_have_been_placed(answer):
    server = RawServer(CUT_OFF_ANSWERS[answer])
    try:
        error = failure(server.base_url)
    finally:
        server.close()
    assert error.may_have_dialled is True
    assert "may" in error.reason and "been placed" in error.reason
    assert "not placed" not in error.reason and "not sent" not in error.reason
    assert server.requests == 1, "never retried"


def test_an_answer_nested_too_deeply_to_parse_is_a_bad_response_that_may_have_dialled(elevenlabs):
    elevenlabs.answer(raw="[" * 100_000, status=200)
    error = failure(elevenlabs.base_url)
    assert error.kind == "bad_response"
    assert error.may_have_dialled is True


def test_an_answer_dripping_slower_than_the_deadline_is_cut_at_connect_plus_read_timeout():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
    server = RawServer(_drips(answer + b'{"success": true}   ', every=0.2))
    started = time.monotonic()
    try:
        error = failure(server.base_url, connect_timeout=0.5, read_timeout=0.5)
    finally:
        server.close()
    # Each byte comes well within the 0.5 s read timeout; only a deadline stops it (the
    # whole answer would take ~19 s).
    assert time.monotonic() - started < 5
    assert error.kind == "deadline_exceeded"
    assert error.may_have_dialled is True
    assert "within 1s" in error.reason


def test_the_adapter_never_retries_a_request():
    client = client_for("http://127.0.0.1:9")
    for scheme in ("http://", "https://"):
        retries = client.session.get_adapter(scheme + "api.elevenlabs.io").max_retries
        assert retries.total == 0
        assert retries.connect == 0 or retries.connect is None
        assert retries.read == 0 or retries.read is None


@pytest.mark.parametrize(
    ("status", "body", "dialled"),
    [
        (500, {"detail": "Internal Server Error"}, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (200, ["success"], True),
        (200, {"success": True, "conversation_id": 7}, True),
        (401, ERROR_401, False),
        (422, ERROR_422, False),
        (429, ERROR_429_BUSY, False),
        (404, {"detail": "Not Found"}, False),
        (200, ANSWER_UNSUCCESSFUL, False),
    ],
)
def test_may_have_dialled_is_true_exactly_when_elevenlabs_may_have_taken_the_call(
    elevenlabs, status, body, dialled
):
    elevenlabs.answer(body, status=status)
    error = failure(elevenlabs.base_url)
    assert error.may_have_dialled is dialled
    assert ("may" in error.reason and "placed" in error.reason) is dialled
