"""Webhooks when the database is down, or up but refusing a statement for now.

Down, a delivery cannot be recorded: 503, so ElevenLabs may retry it. Up but
refusing (a lock or statement timeout, a deadlock), the delivery is recorded as
``error`` and answered 503: ElevenLabs may retry, and the replay command applies
it later either way.
"""

import threading

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from webhook_signing import (
    POST_CALL,
    SINCE,
    TRANSCRIPTION,
    deliveries,
    fixture,
    lines,
    make_call,
    post_signed,
    replay,
    service_backend_waiting_on_a_lock,
)

import db
from app import create_app
from models import calls

# endpoint, the timeout that strikes, lines the replay saves, the call's status after it
REFUSALS = {
    "post-call, lock timeout": (POST_CALL, "lock_timeout", 3, "completed"),
    "post-call, statement timeout": (POST_CALL, "statement_timeout", 3, "completed"),
    "per-line, lock timeout": (TRANSCRIPTION, "lock_timeout", 1, "initiated"),
}


def delivery_for(path, call) -> dict:
    """Return the fixture webhook of an endpoint, for the call."""
    if path == TRANSCRIPTION:
        return fixture("transcription_line.json", call.call_sid)
    event = fixture("post_call_transcription.json", call.call_sid)
    event["data"]["conversation_id"] = call.conversation_id
    return event


@pytest.mark.parametrize("path, timeout, new_lines, status", REFUSALS.values(), ids=REFUSALS.keys())
def test_delivery_refused_by_a_database_timeout_is_recorded_as_error_and_replayed_later(
    app_config, database_url, conn, path, timeout, new_lines, status
):
    # The service's connections carry the timeout, as ALTER ROLE … SET gives them.
    url = make_conninfo(database_url, options=f"-c {timeout}=300ms")
    app = create_app({**app_config, "DATABASE_URL": url})
    call = make_call(conn, "conv_refused")
    try:
        # The call row locked meanwhile, by an operator's UPDATE or a migration batch, say.
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT FROM calls WHERE call_sid = %s FOR UPDATE", (call.call_sid,))
            response = post_signed(app.test_client(), path, delivery_for(path, call))
            holder.rollback()
    finally:
        app.extensions["db_pool"].close()

    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"] == "database_error"
    [delivery] = deliveries(conn)
    assert response.get_json()["details"]["delivery_id"] == delivery["id"]
    assert (delivery["outcome"], delivery["http_status"]) == ("error", 503)
    assert "timeout" in delivery["reason"]
    assert delivery["call_sid"] == call.call_sid
    assert lines(conn, "conv_refused") == []
    assert calls.by_call_sid(conn, call.call_sid).status == "initiated"

    result = replay(database_url, "--since", SINCE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error at receipt): replayed, accepted" in result.stdout
    assert len(lines(conn, "conv_refused")) == new_lines
    assert calls.by_call_sid(conn, call.call_sid).status == status


@pytest.mark.parametrize("path", [TRANSCRIPTION, POST_CALL])
def test_delivery_whose_record_cannot_be_written_changes_nothing(
    app_config, database_url, conn, path
):
    url = make_conninfo(database_url, options="-c lock_timeout=300ms")
    app = create_app({**app_config, "DATABASE_URL": url})
    call = make_call(conn, "conv_unrecorded")
    try:
        with psycopg.connect(database_url) as holder:
            # The delivery log takes no insert meanwhile; calls and transcriptions are free.
            holder.execute("LOCK TABLE webhook_deliveries IN SHARE MODE")
            refused = post_signed(app.test_client(), path, delivery_for(path, call))
            holder.rollback()
        again = post_signed(app.test_client(), path, delivery_for(path, call))
    finally:
        app.extensions["db_pool"].close()

    assert (refused.status_code, refused.get_json()["error"]) == (503, "database_unavailable")
    # The line and its record stand or fall together: neither was kept, so the
    # retry ElevenLabs may send applies it in full.
    assert again.get_json()["status"] == "accepted"
    assert [d["outcome"] for d in deliveries(conn)] == ["accepted"]
    assert len(lines(conn, "conv_unrecorded")) == (1 if path == TRANSCRIPTION else 3)


@pytest.mark.parametrize("path", [POST_CALL, TRANSCRIPTION])
def test_webhook_with_the_database_unreachable_is_503_database_unavailable(
    app_config, create_database, cut_off_database, path
):
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})
    try:
        cut_off_database(url)
        body = {"call_sid": "cs_whatever", "speaker": "agent", "message": "hi", "timestamp": 1}
        response = post_signed(app.test_client(), path, body)
    finally:
        app.extensions["db_pool"].close()
    assert response.status_code == 503
    assert response.get_json()["error"] == "database_unavailable"


def test_only_a_lost_connection_counts_as_the_database_unreachable(database_url, conn):
    with psycopg.connect(database_url, autocommit=True) as lost:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (lost.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as terminated:
            lost.execute("SELECT 1")
        assert db.unreachable(terminated.value, lost)
    with psycopg.connect(database_url, options="-c statement_timeout=50ms") as busy:
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            busy.execute("SELECT pg_sleep(1)")
        assert not db.unreachable(cancelled.value, busy)


@pytest.mark.parametrize("path", [POST_CALL, TRANSCRIPTION])
def test_delivery_whose_connection_is_killed_is_recorded_on_another_for_replay(
    app_config, database_url, conn, path
):
    # One backend killed (an idle-timeout, a failover) while the database stays up.
    app = create_app(app_config)
    call = make_call(conn, "conv_killed")
    answer = {}
    try:
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT FROM calls WHERE call_sid = %s FOR UPDATE", (call.call_sid,))
            delivering = threading.Thread(
                target=lambda: answer.update(
                    response=post_signed(app.test_client(), path, delivery_for(path, call))
                )
            )
            delivering.start()
            conn.execute(
                "SELECT pg_terminate_backend(%s, 5000)", (service_backend_waiting_on_a_lock(conn),)
            )
            delivering.join(timeout=30)
            holder.rollback()
    finally:
        app.extensions["db_pool"].close()

    response = answer["response"]
    assert response.status_code == 503
    assert response.get_json()["error"] == "database_error"
    [delivery] = deliveries(conn)
    assert response.get_json()["details"]["delivery_id"] == delivery["id"]
    assert (delivery["outcome"], delivery["call_sid"]) == ("error", call.call_sid)
    result = replay(database_url, "--since", SINCE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error at receipt): replayed, accepted" in result.stdout


def test_delivery_during_a_database_restart_is_recorded_on_a_new_connection(
    app_config, database_url, cut_off_database, monkeypatch
):
    app = create_app({**app_config, "DB_POOL_MIN_SIZE": 4, "DB_POOL_MAX_SIZE": 4})
    # Every pooled connection was in use a moment ago: none is pinged before it is handed out.
    monkeypatch.setattr(db, "ALIVE_BYPASS_SECONDS", 3600)
    with psycopg.connect(database_url, autocommit=True) as conn:
        call = make_call(conn, "conv_restart")
    body = delivery_for(TRANSCRIPTION, call)
    client = app.test_client()
    try:
        for _ in range(4):
            client.get("/healthz")
        cut_off_database(database_url, refuse_new=False)  # a restart: every backend gone
        during = post_signed(client, TRANSCRIPTION, body)
        after = post_signed(client, TRANSCRIPTION, body)
    finally:
        app.extensions["db_pool"].close()

    assert during.status_code == 503
    assert during.get_json()["error"] == "database_error"
    assert after.status_code == 200  # the same line, now stored
    with psycopg.connect(database_url, autocommit=True) as conn:
        recorded = [(d["id"], d["outcome"]) for d in deliveries(conn)]
    assert recorded[0] == (during.get_json()["details"]["delivery_id"], "error")


def test_a_delivery_our_code_fails_on_is_recorded_as_error_and_answered_500(app, conn, monkeypatch):
    # A bug of ours, not the database's: the delivery is still kept, to replay after the fix.
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("webhooks.apply.apply", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as in production, not raised here
    call = make_call(conn, "conv_bug")
    response = post_signed(app.test_client(), TRANSCRIPTION, delivery_for(TRANSCRIPTION, call))

    assert response.status_code == 500
    [delivery] = deliveries(conn)
    assert response.get_json()["details"] == {"delivery_id": delivery["id"]}
    assert (delivery["outcome"], delivery["http_status"]) == ("error", 500)
    assert delivery["call_sid"] == call.call_sid
    assert lines(conn, call.conversation_id) == []
