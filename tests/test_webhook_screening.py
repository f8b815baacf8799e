"""What screening bounds: what an unsigned sender makes us read and store, and oversized bodies.

Anyone can send to the webhook endpoints. A header that cannot sign anything is
refused before the body is read; a body not signed by ElevenLabs is kept as a
4 KiB prefix, and only so many a minute; a body over the limit is refused
whatever its framing, never parsed cut short.
"""

import io
import socket
import time

from gunicorn_server import free_port, production_env, start, stop, wait_for
from prometheus_client import REGISTRY
from webhook_signing import (
    POST_CALL,
    TRANSCRIPTION,
    body_of,
    deliveries,
    fixture,
    lines,
    make_call,
    post_signed,
    post_with_header,
    signature_header,
)

from app import create_app

PREFIX = 4 * 1024


def test_badly_signed_body_is_kept_as_a_4_kib_prefix_never_whole(client, conn):
    call = make_call(conn)
    sent = fixture("transcription_line.json", call.call_sid)
    sent["message"] = "y" * 20_000  # under the endpoint's limit, over the prefix
    body = body_of(sent)
    response = post_with_header(client, TRANSCRIPTION, body, signature_header(body, secret="no"))
    assert response.status_code == 401
    [delivery] = deliveries(conn)
    assert bytes(delivery["body"]) == body[:PREFIX]
    assert (delivery["body_size"], delivery["body_truncated"]) == (len(body), True)


def test_stale_signature_is_refused_before_the_body_is_read(client, conn):
    stale = signature_header(b"", timestamp=int(time.time()) - 3600)
    size = 20 * 1024 * 1024
    body = io.BytesIO(b"x" * size)
    response = client.post(POST_CALL, input_stream=body, headers={"ElevenLabs-Signature": stale})
    assert response.status_code == 401
    assert "old" in response.get_json()["details"]["reason"]
    assert body.tell() <= PREFIX + 1  # how far the app read
    [delivery] = deliveries(conn)
    assert (delivery["body_size"], len(delivery["body"])) == (size, PREFIX)


def unrecorded(endpoint: str) -> float:
    return (
        REGISTRY.get_sample_value("webhook_deliveries_unrecorded_total", {"endpoint": endpoint})
        or 0.0
    )


def test_unsigned_deliveries_over_the_budget_are_refused_unrecorded_and_counted(app_config, conn):
    app = create_app({**app_config, "WEBHOOK_UNSIGNED_PER_MINUTE": 3})
    call = make_call(conn)
    body = body_of(fixture("transcription_line.json", call.call_sid))
    before = unrecorded("transcription")
    try:
        client = app.test_client()
        answers = [post_with_header(client, TRANSCRIPTION, body, None) for _ in range(5)]
        signed = post_signed(client, TRANSCRIPTION, body=body)
    finally:
        app.extensions["db_pool"].close()
    assert [answer.status_code for answer in answers] == [401] * 5
    ids = [answer.get_json()["details"]["delivery_id"] for answer in answers]
    assert ids[3:] == [None, None] and None not in ids[:3]
    assert unrecorded("transcription") - before == 2
    # ElevenLabs' own deliveries are never held back by the budget.
    assert signed.status_code == 200
    assert [d["outcome"] for d in deliveries(conn)] == ["rejected_signature"] * 3 + ["accepted"]


def chunked_request(port: int, body: bytes) -> bytes:
    """Send a signed per-line webhook with ``Transfer-Encoding: chunked``; return the answer."""
    head = (
        f"POST {TRANSCRIPTION} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nElevenLabs-Signature: {signature_header(body)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + framed)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def test_chunked_bodies_are_read_whole_and_refused_over_the_limit_under_gunicorn(
    database_url, conn, tmp_path
):
    call = make_call(conn)
    small = body_of(fixture("transcription_line.json", call.call_sid))
    large = fixture("transcription_line.json", call.call_sid)
    large["message"] = "z" * (100 * 1024)  # over the per-line limit of 64 KiB
    port = free_port()
    master = start(production_env(database_url, port), tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: _answers(port), "gunicorn to answer")
        accepted = chunked_request(port, small)
        refused = chunked_request(port, body_of(large))
    finally:
        stop(master)
    assert accepted.startswith(b"HTTP/1.1 200"), accepted[:200]
    assert refused.startswith(b"HTTP/1.1 400"), refused[:200]
    assert b"over 65536 bytes" in refused
    assert len(lines(conn, call.conversation_id)) == 1  # the small one; the large never parsed
    outcomes = [(d["outcome"], d["body_truncated"]) for d in deliveries(conn)]
    assert outcomes == [("accepted", False), ("rejected_malformed", True)]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
