"""``python -m ops replay``: rejected deliveries replayed once their cause is fixed."""

import pytest
from commands import run_module
from webhook_signing import (
    POST_CALL,
    SINCE,
    TRANSCRIPTION,
    body_of,
    deliveries,
    fixture,
    lines,
    make_call,
    post_signed,
    replay,
)

from models import calls


def line_for(call_sid):
    return fixture("transcription_line.json", call_sid)


@pytest.fixture
def early_line(client, conn):
    """A line that arrived before its call had a conversation_id: rejected with 400."""
    call = make_call(conn, conversation_id=None)
    response = post_signed(client, TRANSCRIPTION, line_for(call.call_sid))
    assert response.status_code == 400
    return call, response.get_json()["details"]["delivery_id"]


def give_conversation(conn, call, conversation_id="conv_replayed"):
    calls.mark_initiated(
        conn,
        call.call_sid,
        conversation_id=conversation_id,
        twilio_call_sid=None,
        api_called_at=call.created_at,
    )


def test_rejected_line_is_replayed_after_the_call_gets_its_conversation_id(
    database_url, conn, early_line
):
    call, delivery_id = early_line
    give_conversation(conn, call)
    result = replay(database_url, "--since", SINCE)
    assert result.returncode == 0, result.stderr
    assert f"delivery {delivery_id} (transcription, no_conversation_id at receipt)" in result.stdout
    assert "replayed, accepted" in result.stdout
    assert len(lines(conn, "conv_replayed")) == 1
    [delivery] = deliveries(conn)
    assert delivery["outcome"] == "no_conversation_id"  # what happened at receipt stays
    assert (delivery["replay_outcome"], delivery["replay_count"]) == ("accepted", 1)
    assert delivery["replayed_at"] is not None


def test_replaying_again_changes_nothing(database_url, conn, early_line):
    call, delivery_id = early_line
    give_conversation(conn, call)
    assert replay(database_url, "--since", SINCE).returncode == 0
    again = replay(database_url, "--since", SINCE)
    assert again.returncode == 0
    assert again.stdout.startswith("nothing to replay since 2000-01-01T00:00:00+00:00")
    by_id = replay(database_url, "--delivery", str(delivery_id))
    assert by_id.returncode == 0
    assert "already settled (accepted); nothing to do" in by_id.stdout
    assert len(lines(conn, "conv_replayed")) == 1
    assert deliveries(conn)[0]["replay_count"] == 1


def test_replay_of_a_line_the_live_webhook_already_saved_is_a_duplicate(
    client, database_url, conn, early_line
):
    call, delivery_id = early_line
    give_conversation(conn, call)
    assert post_signed(client, TRANSCRIPTION, line_for(call.call_sid)).status_code == 200
    result = replay(database_url, "--delivery", str(delivery_id), env_url=True)
    assert result.returncode == 0, result.stderr
    assert "replayed, duplicate" in result.stdout
    assert len(lines(conn, "conv_replayed")) == 1


def test_replay_still_rejected_exits_non_zero_and_notes_the_outcome(database_url, conn, early_line):
    _call, delivery_id = early_line
    result = replay(database_url, "--delivery", str(delivery_id))
    assert result.returncode == 1
    assert "replayed, no_conversation_id" in result.stdout
    assert "0 settled, 1 not" in result.stdout
    delivery = deliveries(conn)[0]
    assert (delivery["replay_outcome"], delivery["replay_count"]) == ("no_conversation_id", 1)


def test_dry_run_lists_and_changes_nothing(database_url, conn, early_line):
    call, _ = early_line
    give_conversation(conn, call)
    result = replay(database_url, "--since", SINCE, "--dry-run")
    assert result.returncode == 0
    assert "would replay" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "1 deliveries: 1 would be replayed, 0 already settled, 0 refused (dry run: nothing changed)"
    )
    assert lines(conn, "conv_replayed") == []
    assert deliveries(conn)[0]["replay_count"] == 0


def test_since_leaves_older_deliveries_alone(database_url, conn, early_line):
    call, _ = early_line
    give_conversation(conn, call)
    result = replay(database_url, "--since", "2999-01-01T00:00Z")
    assert result.returncode == 0
    assert lines(conn, "conv_replayed") == []


def test_post_call_for_a_call_not_yet_known_is_replayed_once_it_is(client, database_url, conn):
    event = fixture("post_call_transcription.json", "cs_not_yet")
    event["data"]["conversation_id"] = "conv_from_old_code"
    assert post_signed(client, POST_CALL, event).status_code == 400
    # The old code (during a rollback) writes its call row by conversation_id.
    conn.execute(
        "INSERT INTO calls (driver_id, conversation_id, status) VALUES (7, %s, 'initiated')",
        ("conv_from_old_code",),
    )
    result = replay(database_url, "--since", SINCE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines(conn, "conv_from_old_code")) == 3
    assert calls.by_conversation_id(conn, "conv_from_old_code").status == "completed"


def test_a_signed_post_call_over_1_mib_refused_is_kept_whole_and_replayed_once_its_call_exists(
    client, database_url, conn
):
    # A long call: 600 lines of 2,000 characters, about 1.3 MiB signed.
    event = fixture("post_call_transcription.json", "cs_not_yet")
    event["data"]["conversation_id"] = "conv_long_call"
    turn = event["data"]["transcript"][0]
    event["data"]["transcript"] = [
        {**turn, "message": f"{n:04d} " + "x" * 1995, "time_in_call_secs": n} for n in range(600)
    ]
    body = body_of(event)
    assert len(body) > 1024 * 1024
    response = post_signed(client, POST_CALL, body=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_call"
    [delivery] = deliveries(conn)
    assert (bytes(delivery["body"]), delivery["body_truncated"]) == (body, False)
    conn.execute(
        "INSERT INTO calls (driver_id, conversation_id, status) VALUES (7, %s, 'initiated')",
        ("conv_long_call",),
    )
    result = replay(database_url, "--delivery", str(delivery["id"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed, accepted: 600 new lines" in result.stdout
    assert len(lines(conn, "conv_long_call")) == 600
    assert calls.by_conversation_id(conn, "conv_long_call").status == "completed"


def test_a_delivery_with_a_bad_signature_is_never_replayed(client, database_url, conn):
    call = make_call(conn)
    # Current and well formed, signed with another secret: refused by the HMAC itself.
    post_signed(client, TRANSCRIPTION, line_for(call.call_sid), secret="wsec_someone_else")
    [delivery] = deliveries(conn)
    assert delivery["reason"] == "signature does not match the body"
    delivery_id = delivery["id"]
    assert "nothing to replay" in replay(database_url, "--since", SINCE).stdout
    result = replay(database_url, "--delivery", str(delivery_id))
    assert result.returncode == 1
    assert "signature was not valid: never replayed" in result.stdout
    assert lines(conn, call.conversation_id) == []


@pytest.mark.parametrize("delivery_id", [999999, 2**63])
def test_unknown_delivery_id_exits_non_zero(database_url, delivery_id):
    result = replay(database_url, "--delivery", str(delivery_id))
    assert result.returncode == 1
    assert f"delivery {delivery_id}: no such delivery" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "2026-11-25T10:00"], "give a time zone"),
        (["--since", "last tuesday"], "not an ISO 8601 time"),
        ([], "one of the arguments --since --delivery is required"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(database_url, args, message):
    result = replay(database_url, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_without_a_database_the_error_is_one_line():
    result = run_module("ops", "replay", "--since", SINCE, database_url=None)
    assert result.returncode == 1
    assert result.stderr == "error: no database: set DATABASE_URL or pass --database-url\n"


def test_unreachable_database_is_one_line():
    result = replay("postgresql://nobody@127.0.0.1:1/nowhere", "--since", SINCE)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to the database:")
    assert result.stderr.count("\n") == 1
