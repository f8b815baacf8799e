"""Production gunicorn: one shared socket, a reload drops nothing, one-line refusals."""

import signal
import socket
import threading
from pathlib import Path

import pytest
import requests
from gunicorn_server import (
    free_port,
    production_env,
    serving,
    start,
    stop,
    wait_for,
    workers_of,
)

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc"
)

LISTEN = "0A"  # the TCP state column of /proc/net/tcp


def accept_queues(port: int) -> list[int]:
    """Return how many connections wait for accept on each socket listening on ``port``."""
    queues = []
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state, queued = row.split()[1], row.split()[3], row.split()[4]
        if local == f"0100007F:{port:04X}" and state == LISTEN:
            queues.append(int(queued.split(":")[1], 16))  # rx_queue: the accept backlog
    return queues


def listening_sockets(port: int) -> int:
    """Return how many sockets listen on 127.0.0.1:``port``."""
    return len(accept_queues(port))


def test_the_workers_share_one_listening_socket(database_url, tmp_path):
    # A socket per worker (reuse_port) resets connections queued on it at a reload.
    port = free_port()
    master = start(production_env(database_url, port), tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: serving(port), "gunicorn to serve")
        assert wait_for(lambda: len(workers_of(master.pid)) == 2, "two workers")
        assert listening_sockets(port) == 1
    finally:
        stop(master)
    assert listening_sockets(port) == 0


def test_a_second_server_on_a_port_in_use_refuses_in_one_line(database_url, tmp_path):
    port = free_port()
    first = start(production_env(database_url, port), tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: serving(port), "the first server to serve")
        second_log = tmp_path / "second.log"
        second = start(production_env(database_url, port), second_log)
        assert second.wait(timeout=60) == 1
        assert f"error: 127.0.0.1:{port} is already in use by another server" in (
            second_log.read_text().splitlines()
        )
        assert listening_sockets(port) == 1  # the first server's own, nothing added
        assert serving(port)
    finally:
        if second is not None:  # had it started after all, it must not outlive the test
            stop(second)
        stop(first)


def test_an_unreachable_database_stops_start_up_with_one_error_line(tmp_path):
    port = free_port()
    env = production_env("postgresql://nobody@127.0.0.1:1/calls", port)
    log = tmp_path / "gunicorn.log"
    master = start(env, log)
    try:
        assert master.wait(timeout=60) == 1
    finally:
        stop(master)
    errors = [line for line in log.read_text().splitlines() if "error" in line.lower()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: cannot connect to the database: ")
    assert "Connection refused" in errors[0]


def more_load(outcomes: list) -> None:
    """Wait until 50 more requests have been answered or refused."""
    count = len(outcomes)
    wait_for(lambda: len(outcomes) > count + 50, "50 more requests")


def reload_all(master) -> None:
    """Send gunicorn's master a HUP and wait until every worker is a new one."""
    before = workers_of(master.pid)
    master.send_signal(signal.SIGHUP)
    wait_for(lambda: not workers_of(master.pid) & before, "every worker replaced")


def test_a_reload_under_load_drops_no_connection(database_url, tmp_path):
    port = free_port()
    master = start(production_env(database_url, port), tmp_path / "gunicorn.log")
    url = f"http://127.0.0.1:{port}/healthz"
    outcomes, done, clients = [], threading.Event(), []

    def client():
        while not done.is_set():
            try:  # a new connection each time: the ones a closing socket would reset
                outcomes.append(requests.get(url, timeout=10, headers={"Connection": "close"}))
            except requests.RequestException as exc:
                outcomes.append(exc)

    try:
        wait_for(lambda: serving(port), "gunicorn to serve")
        clients += [threading.Thread(target=client) for _ in range(16)]
        for thread in clients:
            thread.start()
        for _ in range(3):
            wait_for(lambda: len(workers_of(master.pid)) == 2, "two workers")
            more_load(outcomes)
            reload_all(master)
        more_load(outcomes)
    finally:
        done.set()
        for thread in clients:
            thread.join(timeout=30)
        stop(master)
    failed = [o for o in outcomes if not isinstance(o, requests.Response) or o.status_code != 200]
    assert failed == [], failed[:3]


def test_a_reload_answers_a_request_sent_on_a_connection_accepted_before_it(database_url, tmp_path):
    # The connection waits on the old worker's poller, with nothing sent, when
    # the reload starts; its worker must still answer it while stopping.
    port = free_port()
    env = production_env(database_url, port, GUNICORN_CMD_ARGS="--keep-alive 60")
    master = start(env, tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: serving(port), "gunicorn to serve")
        old = wait_for(
            lambda: len(workers_of(master.pid)) == 2 and workers_of(master.pid), "workers"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            wait_for(lambda: accept_queues(port) == [0], "a worker to accept the connection")
            master.send_signal(signal.SIGHUP)
            wait_for(lambda: len(workers_of(master.pid) - old) == 2, "two new workers")
            assert workers_of(master.pid) & old, "the old workers were to wait for the connection"
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: reload\r\n\r\n")
            answer = sock.recv(65536)
    finally:
        stop(master)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert b"Connection: close" in answer
