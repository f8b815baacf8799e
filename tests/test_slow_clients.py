"""Idle and slow clients leave /healthz answering: gunicorn parks idle ones, nginx buffers slow.

Real gunicorn with the production config (2 workers x 2 threads here), and
nginx started from deploy/nginx.conf in front of it. /healthz must answer
within the client's 5 s timeout; today's gthread worker left it waiting behind
every idle connection, 5 s each per thread.
"""

import uuid

import nginx_server
import pytest
import requests
from credentials import API_TOKEN
from gunicorn_server import free_port, production_env, serving, start, stop, wait_for
from slow_clients import (
    A_REQUEST_THEN_HALF_OF_ONE,
    A_WHOLE_REQUEST,
    HALF_A_REQUEST_LINE,
    HEAD_WITHOUT_ITS_END,
    dripping_clients,
    idle_clients,
)


def healthz(port: int) -> int:
    return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code


@pytest.fixture
def gunicorn(database_url, elevenlabs, tmp_path):
    """Serve the app under gunicorn with the production config; return its port."""
    port = free_port()
    env = production_env(database_url, port, ELEVENLABS_BASE_URL=elevenlabs.base_url)
    master = start(env, tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: serving(port), "gunicorn to serve")
        yield port
    finally:
        stop(master)


@pytest.fixture
def nginx(gunicorn, tmp_path):
    """Start nginx from deploy/nginx.conf in front of ``gunicorn``; return its port."""
    port = free_port()
    server = nginx_server.start(port, gunicorn, tmp_path)
    try:
        wait_for(lambda: serving(port), "nginx to serve")
        yield port
    finally:
        nginx_server.stop(server)


@pytest.mark.parametrize(
    ("sent", "once_answered"),
    [
        (b"", b""),
        (HALF_A_REQUEST_LINE, b""),
        (A_REQUEST_THEN_HALF_OF_ONE, b""),
        (A_WHOLE_REQUEST, HALF_A_REQUEST_LINE),
    ],
    ids=[
        "sending nothing",
        "half a request line",
        "a request and half of the next",
        "a request, then once answered half of the next",
    ],
)
def test_100_idle_connections_leave_healthz_answering(gunicorn, sent, once_answered):
    with idle_clients(gunicorn, 100, sent, once_answered):
        assert healthz(gunicorn) == 200


def test_30_clients_dripping_their_request_head_leave_healthz_answering(gunicorn):
    with dripping_clients(gunicorn, 30, heads=[HEAD_WITHOUT_ITS_END]):
        assert healthz(gunicorn) == 200


def test_100_idle_and_30_dripping_clients_leave_healthz_answering_through_nginx(nginx):
    with idle_clients(nginx, 100), dripping_clients(nginx, 30):
        assert healthz(nginx) == 200


def test_a_call_request_through_nginx_places_the_call_with_its_request_id(nginx, elevenlabs):
    request_id = str(uuid.uuid4())
    answer = requests.post(
        f"http://127.0.0.1:{nginx}/driver_data/call-elevenlabs",
        json={"driver_id": 42, "phone_number": "+14155550123"},
        headers={"Authorization": f"Bearer {API_TOKEN}", "X-Request-ID": request_id},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-ID"] == request_id
    assert len(elevenlabs.received) == 1
