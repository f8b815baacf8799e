"""Production gunicorn: a socket per worker, never beside another server, one-line refusals."""

from pathlib import Path

import pytest
import requests
from gunicorn_server import free_port, production_env, start, stop, wait_for, workers_of

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc"
)

LISTEN = "0A"  # the TCP state column of /proc/net/tcp


def listening_sockets(port: int) -> int:
    """Return how many sockets listen on 127.0.0.1:``port``."""
    found = 0
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        if local == f"0100007F:{port:04X}" and state == LISTEN:
            found += 1
    return found


def serving(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


def test_each_worker_listens_on_a_socket_of_its_own(database_url, tmp_path):
    # So the kernel spreads keep-alive connections over the workers, rather than
    # the first worker awake taking them all.
    port = free_port()
    master = start(production_env(database_url, port), tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: serving(port), "gunicorn to serve")
        workers = wait_for(lambda: len(workers_of(master.pid)) == 2, "two workers")
        assert workers
        assert wait_for(lambda: listening_sockets(port) == 2, "a socket per worker")
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
        assert listening_sockets(port) == 2  # the first server's own, nothing added
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
