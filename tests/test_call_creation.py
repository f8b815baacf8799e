"""``POST /driver_data/call-elevenlabs``: the row first, then ElevenLabs; every outcome kept."""

import io
import logging
import time

import psycopg
import pytest
from credentials import API_TOKEN
from prometheus_client import REGISTRY
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from wire_faults import refusing_address

import db
from app import create_app
from elevenlabs.simulator import (
    ANSWER_OK,
    ANSWER_UNSUCCESSFUL,
    ERROR_401,
    ERROR_422,
    ERROR_429_BUSY,
    ERROR_429_CONCURRENCY,
    OUTBOUND_CALL_PATH,
)
from migrations.kit import Run, load_chain, upgrade

pytestmark = pytest.mark.usefixtures("dials_the_simulator")

CALL_REQUEST = {"driver_id": 42, "phone_number": "+14155550123"}


@pytest.fixture
def make_client(app_config):
    """Return a factory of test clients for apps configured with extra settings."""
    apps = []

    def make(**settings):
        apps.append(create_app({**app_config, **settings}))
        return apps[-1].test_client()

    yield make
    for made in apps:
        made.extensions["db_pool"].close()


def post_call(client, body, headers):
    return client.post("/driver_data/call-elevenlabs", json=body, headers=headers)


def post_raw(client, raw: bytes, headers, content_type="application/json"):
    """POST bytes as they are, for bodies ``json=`` cannot write (bad JSON, a key twice, …)."""
    return client.post(
        "/driver_data/call-elevenlabs", data=raw, content_type=content_type, headers=headers
    )


def call_rows(conn) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM calls ORDER BY id").fetchall()


def test_call_row_exists_before_elevenlabs_is_called(
    client, auth_headers, elevenlabs, database_url
):
    seen_by_elevenlabs = []

    def look_at_the_database(received):
        # A connection of its own: only committed data is visible from here.
        with psycopg.connect(database_url) as other:
            seen_by_elevenlabs.append(
                other.execute(
                    "SELECT call_sid, status, conversation_id, driver_id, phone_number "
                    "FROM calls WHERE call_sid = %s",
                    (received.call_sid,),
                ).fetchone()
            )

    elevenlabs.answer(ANSWER_OK, on_request=look_at_the_database)
    response = post_call(client, CALL_REQUEST, auth_headers)

    assert response.status_code == 201
    call_sid = response.get_json()["call_sid"]
    assert seen_by_elevenlabs == [(call_sid, "initiating", None, 42, "+14155550123")]


def test_no_pool_connection_is_held_while_elevenlabs_is_called(
    app, client, auth_headers, elevenlabs
):
    pool = app.extensions["db_pool"]
    checked_out_during_the_call = []

    def count_checked_out(_received):
        stats = pool.get_stats()
        checked_out_during_the_call.append(stats["pool_size"] - stats["pool_available"])

    elevenlabs.answer(ANSWER_OK, on_request=count_checked_out)
    assert post_call(client, CALL_REQUEST, auth_headers).status_code == 201
    assert checked_out_during_the_call == [0]


def test_elevenlabs_receives_the_documented_request(client, auth_headers, elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    body = {**CALL_REQUEST, "driver_name": "Dana", "variables": {"load_id": "L-77", "eta": 20}}
    call_sid = post_call(client, body, auth_headers).get_json()["call_sid"]

    [received] = elevenlabs.received
    assert received.path == OUTBOUND_CALL_PATH
    assert received.api_key == "xi_test_key"
    assert received.body == {
        "agent_id": "agent_7f3c2d1e9b8a",
        "agent_phone_number_id": "phnum_5b2a9c0d",
        "to_number": "+14155550123",
        "conversation_initiation_client_data": {
            "dynamic_variables": {
                "load_id": "L-77",
                "eta": 20,
                "driver_name": "Dana",
                "call_sid": call_sid,
            }
        },
    }


def test_request_may_name_its_own_agent_and_phone_number(client, auth_headers, elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    body = {**CALL_REQUEST, "agent_id": "agent_other", "agent_phone_number_id": "phnum_other"}
    assert post_call(client, body, auth_headers).status_code == 201
    assert elevenlabs.received[0].body["agent_id"] == "agent_other"
    assert elevenlabs.received[0].body["agent_phone_number_id"] == "phnum_other"


def test_successful_call_stores_conversation_id_and_twilio_call_sid(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    response = post_call(client, {**CALL_REQUEST, "driver_name": "Dana"}, auth_headers)

    assert response.status_code == 201
    call = response.get_json()
    assert call["status"] == "initiated"
    assert call["conversation_id"] == ANSWER_OK["conversation_id"]
    assert call["twilio_call_sid"] == ANSWER_OK["callSid"]
    assert call["call_sid"].startswith("cs_")
    assert response.headers["Location"].endswith(f"/driver_data/calls/{call['call_sid']}")

    [row] = call_rows(conn)
    assert row["call_sid"] == call["call_sid"]
    assert row["status"] == "initiated"
    assert row["conversation_id"] == ANSWER_OK["conversation_id"]
    assert row["twilio_call_sid"] == ANSWER_OK["callSid"]
    assert row["driver_id"] == 42
    assert row["driver_name"] == "Dana"
    assert row["created_at"] <= row["api_called_at"] <= row["initiated_at"]
    assert row["failed_at"] is None
    assert row["failure_reason"] is None


def test_success_without_conversation_id_is_still_201(client, auth_headers, elevenlabs, conn):
    elevenlabs.answer({**ANSWER_OK, "conversation_id": None})
    response = post_call(client, CALL_REQUEST, auth_headers)

    assert response.status_code == 201
    assert response.get_json()["conversation_id"] is None
    [row] = call_rows(conn)
    assert row["status"] == "initiated"
    assert row["conversation_id"] is None
    assert row["twilio_call_sid"] == ANSWER_OK["callSid"]


def test_conversation_id_already_held_by_another_call_does_not_lose_the_call(
    client, auth_headers, elevenlabs, conn
):
    conn.execute(
        "INSERT INTO calls (conversation_id, status) VALUES (%s, 'completed')",
        (ANSWER_OK["conversation_id"],),
    )
    elevenlabs.answer(ANSWER_OK)
    response = post_call(client, CALL_REQUEST, auth_headers)

    assert response.status_code == 201
    assert response.get_json()["status"] == "initiated"
    assert response.get_json()["conversation_id"] is None
    assert response.get_json()["twilio_call_sid"] == ANSWER_OK["callSid"]


def test_conversation_id_already_held_by_another_call_is_shown_on_the_call_and_counted(
    client, auth_headers, elevenlabs, conn
):
    conn.execute(
        "INSERT INTO calls (conversation_id, status) VALUES (%s, 'completed')",
        (ANSWER_OK["conversation_id"],),
    )
    elevenlabs.answer(ANSWER_OK)
    clashes = REGISTRY.get_sample_value("elevenlabs_conversation_id_clashes_total") or 0
    answer = post_call(client, CALL_REQUEST, auth_headers).get_json()

    assert ANSWER_OK["conversation_id"] in answer["failure_reason"]
    assert "another call already has" in answer["failure_reason"]
    shown = client.get(f"/driver_data/calls/{answer['call_sid']}", headers=auth_headers)
    assert shown.get_json()["failure_reason"] == answer["failure_reason"]
    assert REGISTRY.get_sample_value("elevenlabs_conversation_id_clashes_total") == clashes + 1


FAILURES = {
    "401 invalid_api_key": (401, ERROR_401, None, "invalid_api_key"),
    "422 validation": (422, ERROR_422, None, "body.agent_phone_number_id: Field required"),
    "429 too many concurrent": (429, ERROR_429_CONCURRENCY, None, "too_many_concurrent_requests"),
    "429 system busy": (429, ERROR_429_BUSY, None, "system_busy"),
    "500": (500, {"detail": "Internal Server Error"}, None, "HTTP 500"),
    "success false": (200, ANSWER_UNSUCCESSFUL, None, "Failed to initiate call"),
    "200 not JSON": (200, None, "<html>oops</html>", "not JSON"),
    "200 JSON of the wrong shape": (200, {"ok": True}, None, "no boolean 'success'"),
}


@pytest.mark.parametrize(("status", "body", "raw", "reason"), FAILURES.values(), ids=FAILURES)
def test_each_elevenlabs_failure_leaves_a_failed_row_and_answers_502(
    client, auth_headers, elevenlabs, conn, status, body, raw, reason
):
    elevenlabs.answer(body, status=status, raw=raw)
    response = post_call(client, CALL_REQUEST, auth_headers)

    assert response.status_code == 502
    answer = response.get_json()
    assert answer["error"] == "elevenlabs_failed"
    assert answer["message"]
    [row] = call_rows(conn)
    assert answer["details"]["call_sid"] == row["call_sid"]
    assert reason in answer["details"]["reason"]
    assert row["status"] == "failed"
    assert row["failure_reason"] == answer["details"]["reason"]
    assert row["conversation_id"] is None
    assert row["created_at"] <= row["api_called_at"] <= row["failed_at"]
    assert len(elevenlabs.received) == 1, "never retried"


def test_refused_connection_leaves_a_failed_row_and_answers_502(make_client, auth_headers, conn):
    sock, base_url = refusing_address()
    with sock:
        response = post_call(make_client(ELEVENLABS_BASE_URL=base_url), CALL_REQUEST, auth_headers)

    assert response.status_code == 502
    assert response.get_json()["details"]["kind"] == "connection_refused"
    assert response.get_json()["details"]["may_have_dialled"] is False
    [row] = call_rows(conn)
    assert row["status"] == "failed"
    assert "refused" in row["failure_reason"]


def test_elevenlabs_hanging_past_the_read_timeout_answers_502_within_the_timeout(
    make_client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK, hang=True)
    client = make_client(ELEVENLABS_READ_TIMEOUT=0.5)

    started = time.monotonic()
    response = post_call(client, CALL_REQUEST, auth_headers)
    elapsed = time.monotonic() - started
    elevenlabs.release()

    assert response.status_code == 502
    # Bounded by what it means, clearly short of the 20 s default, not by this machine's speed.
    assert 0.5 <= elapsed < 5
    details = response.get_json()["details"]
    assert details["kind"] == "read_timeout"
    assert details["may_have_dialled"] is True
    [row] = call_rows(conn)
    assert row["status"] == "failed"
    assert "did not answer within 0.5s" in row["failure_reason"]
    assert len(elevenlabs.received) == 1, "never retried"


def test_each_call_request_reaches_elevenlabs_exactly_once(client, auth_headers, elevenlabs):
    elevenlabs.answer(ANSWER_OK, fresh_ids=True)
    sids = [post_call(client, CALL_REQUEST, auth_headers).get_json()["call_sid"] for _ in range(3)]
    assert [received.call_sid for received in elevenlabs.received] == sids
    assert len(set(sids)) == 3


def test_call_creation_logs_no_whole_phone_number(client, auth_headers, elevenlabs, caplog):
    # ElevenLabs' error echoes the number: the log line of the failure must mask it too.
    elevenlabs.answer({"detail": "Cannot call +14155550123 from this number"}, status=400)
    with caplog.at_level(logging.INFO, logger="driver_data"):
        call_sid = post_call(client, CALL_REQUEST, auth_headers).get_json()["details"]["call_sid"]

    lines = [record.getMessage() for record in caplog.records]
    assert any(call_sid in line and "+1415•••0123" in line for line in lines), lines
    assert any("failed" in line and "+1415•••0123" in line for line in lines), lines
    assert not any("4155550123" in line for line in lines), lines


def test_a_keyed_call_to_a_suppressed_number_keeps_neither_row_nor_key(
    client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    suppression = f"/driver_data/suppressions/{CALL_REQUEST['phone_number']}"
    keyed = {**auth_headers, "Idempotency-Key": "k-suppressed"}
    client.put(suppression, headers=auth_headers)
    refused = post_call(client, CALL_REQUEST, keyed)
    assert (refused.status_code, refused.get_json()["error"]) == (409, "suppressed")
    assert call_rows(conn) == []

    # The key was claimed in the insert's transaction and went with it: once the number
    # is lifted, the same key places the call.
    client.delete(suppression, headers=auth_headers)
    placed = post_call(client, CALL_REQUEST, keyed)
    assert placed.status_code == 201
    assert len(elevenlabs.received) == 1


def test_missing_agent_configuration_is_503_and_nothing_written(
    make_client, auth_headers, elevenlabs, conn
):
    elevenlabs.answer(ANSWER_OK)
    client = make_client(ELEVENLABS_AGENT_ID="", ELEVENLABS_PHONE_NUMBER_ID="")
    response = post_call(client, CALL_REQUEST, auth_headers)

    assert response.status_code == 503
    assert response.get_json()["error"] == "not_configured"
    assert "ELEVENLABS_AGENT_ID" in response.get_json()["message"]
    assert call_rows(conn) == []
    assert elevenlabs.received == []
    # The request's own ids are enough.
    body = {**CALL_REQUEST, "agent_id": "agent_x", "agent_phone_number_id": "phnum_x"}
    assert post_call(client, body, auth_headers).status_code == 201


BAD_BODIES = {
    "driver_id missing": ({"phone_number": "+14155550123"}, "driver_id"),
    "driver_id as text": ({**CALL_REQUEST, "driver_id": "12"}, "driver_id"),
    "driver_id boolean": ({**CALL_REQUEST, "driver_id": True}, "driver_id"),
    "driver_id fraction": ({**CALL_REQUEST, "driver_id": 1.5}, "driver_id"),
    "driver_id zero": ({**CALL_REQUEST, "driver_id": 0}, "driver_id"),
    "driver_id negative": ({**CALL_REQUEST, "driver_id": -3}, "driver_id"),
    "driver_id past bigint": ({**CALL_REQUEST, "driver_id": 2**63}, "driver_id"),
    "driver_id null": ({**CALL_REQUEST, "driver_id": None}, "driver_id"),
    "phone missing": ({"driver_id": 42}, "phone_number"),
    "phone without plus": ({**CALL_REQUEST, "phone_number": "14155550123"}, "phone_number"),
    "phone too short": ({**CALL_REQUEST, "phone_number": "+123456"}, "phone_number"),
    "phone too long": ({**CALL_REQUEST, "phone_number": "+1234567890123456"}, "phone_number"),
    "phone leading zero": ({**CALL_REQUEST, "phone_number": "+0415555012"}, "phone_number"),
    "phone with spaces": ({**CALL_REQUEST, "phone_number": "+1 415 555 0123"}, "phone_number"),
    "phone trailing newline": ({**CALL_REQUEST, "phone_number": "+14155550123\n"}, "phone_number"),
    "phone unicode digits": ({**CALL_REQUEST, "phone_number": "+١٤١٥٥٥٥٠١٢٣"}, "phone_number"),
    "phone a number": ({**CALL_REQUEST, "phone_number": 14155550123}, "phone_number"),
    "driver_name empty": ({**CALL_REQUEST, "driver_name": ""}, "driver_name"),
    "driver_name blank": ({**CALL_REQUEST, "driver_name": "   "}, "driver_name"),
    "driver_name too long": ({**CALL_REQUEST, "driver_name": "D" * 101}, "driver_name"),
    "driver_name NUL": ({**CALL_REQUEST, "driver_name": "Da\x00na"}, "driver_name"),
    "driver_name newline": ({**CALL_REQUEST, "driver_name": "Da\nna"}, "driver_name"),
    "driver_name lone surrogate": ({**CALL_REQUEST, "driver_name": "Da\ud800"}, "driver_name"),
    "driver_name object": ({**CALL_REQUEST, "driver_name": {"first": "Dana"}}, "driver_name"),
    "variables a list": ({**CALL_REQUEST, "variables": ["a"]}, "variables"),
    "variables null": ({**CALL_REQUEST, "variables": None}, "variables"),
    "variable nested": ({**CALL_REQUEST, "variables": {"load": {"id": 1}}}, "variables"),
    "variable a list": ({**CALL_REQUEST, "variables": {"loads": [1, 2]}}, "variables"),
    "variable null": ({**CALL_REQUEST, "variables": {"load": None}}, "variables"),
    "variable system__": ({**CALL_REQUEST, "variables": {"system__time": "x"}}, "variables"),
    "variable call_sid": ({**CALL_REQUEST, "variables": {"call_sid": "mine"}}, "variables"),
    "variable name odd": ({**CALL_REQUEST, "variables": {"load id": "x"}}, "variables"),
    "variable name long": ({**CALL_REQUEST, "variables": {"n" * 65: "x"}}, "variables"),
    "variable text long": ({**CALL_REQUEST, "variables": {"note": "x" * 501}}, "variables"),
    "variable huge int": ({**CALL_REQUEST, "variables": {"n": 2**60}}, "variables"),
    "too many variables": (
        {**CALL_REQUEST, "variables": {f"v{i}": i for i in range(33)}},
        "variables",
    ),
    "driver_name twice": (
        {**CALL_REQUEST, "driver_name": "Dana", "variables": {"driver_name": "Bo"}},
        "variables",
    ),
    "agent_id odd": ({**CALL_REQUEST, "agent_id": "agent/../x"}, "agent_id"),
    "agent_id empty": ({**CALL_REQUEST, "agent_id": ""}, "agent_id"),
    "phone number id a number": (
        {**CALL_REQUEST, "agent_phone_number_id": 5},
        "agent_phone_number_id",
    ),
    "unknown field": ({**CALL_REQUEST, "priority": "high"}, "priority"),
}


@pytest.mark.parametrize(("body", "field"), BAD_BODIES.values(), ids=BAD_BODIES)
def test_bad_input_is_400_naming_the_field_and_nothing_is_written(
    client, auth_headers, elevenlabs, conn, body, field
):
    elevenlabs.answer(ANSWER_OK)
    response = post_call(client, body, auth_headers)

    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "validation_error"
    assert field in answer["details"], answer
    assert call_rows(conn) == []
    assert elevenlabs.received == []


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'"text"', b"42", b"null", b"true", b"{not json", b"", b'{"driver_id": NaN}'],
)
def test_a_body_that_is_not_a_json_object_is_400_and_nothing_written(
    client, auth_headers, elevenlabs, conn, raw
):
    elevenlabs.answer(ANSWER_OK)
    response = post_raw(client, raw, auth_headers)
    assert response.status_code == 400
    assert set(response.get_json()) == {"error", "message", "details"}
    assert call_rows(conn) == []
    assert elevenlabs.received == []


def test_json_nested_too_deeply_to_parse_is_400(client, auth_headers, conn):
    response = post_raw(client, b"[" * 200_000, auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert response.get_json()["details"]["reason"] == "nested too deeply"
    assert call_rows(conn) == []


def test_a_body_sent_as_a_form_is_415_naming_the_content_type_header(client, auth_headers, conn):
    # What `curl -d '{…}'` sends without -H 'Content-Type: application/json'.
    response = post_raw(
        client,
        b'{"driver_id": 42, "phone_number": "+14155550123"}',
        auth_headers,
        "application/x-www-form-urlencoded",
    )
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.get_json()["message"]
    assert "application/x-www-form-urlencoded" in response.get_json()["message"]
    assert call_rows(conn) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"driver_id": 42, "phone_number": "nope", "phone_number": "+14155550123"}',
        b'{"driver_id": 42, "phone_number": "+14155550123", "variables": {"a": 1, "a": 2}}',
    ],
)
def test_a_key_given_twice_is_400_and_nothing_is_written(
    client, auth_headers, elevenlabs, conn, body
):
    response = post_raw(client, body, auth_headers)
    assert response.status_code == 400
    assert "appears twice" in response.get_json()["details"]["reason"]
    assert call_rows(conn) == []
    assert elevenlabs.received == []


def test_a_5000_digit_number_is_400_with_a_clear_message(client, auth_headers, conn):
    body = b'{"driver_id": ' + b"9" * 5000 + b', "phone_number": "+14155550123"}'
    response = post_raw(client, body, auth_headers)
    assert response.status_code == 400
    reason = response.get_json()["details"]["reason"]
    assert reason == "a number of 5000 digits is out of every field's range"
    assert call_rows(conn) == []


def test_a_chunked_body_over_the_limit_is_413_and_never_parsed(
    make_client, auth_headers, elevenlabs, conn
):
    # What gunicorn hands the app for Transfer-Encoding: chunked: no Content-Length,
    # a stream it ends itself. The body is a valid call request padded past 1 KiB.
    body = b'{"driver_id": 42, "phone_number": "+14155550123", "driver_name": "Dana"}'
    body += b" " * 3000
    response = make_client(MAX_CONTENT_LENGTH=1024).post(
        "/driver_data/call-elevenlabs",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={**auth_headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert call_rows(conn) == []
    assert elevenlabs.received == []


def test_a_chunked_body_within_the_limit_is_read_whole(make_client, auth_headers, elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    body = b'{"driver_id": 42, "phone_number": "+14155550123"}' + b" " * 900
    response = make_client(MAX_CONTENT_LENGTH=len(body)).post(
        "/driver_data/call-elevenlabs",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={**auth_headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 201


def test_non_finite_variable_values_are_refused(client, auth_headers, elevenlabs, conn):
    elevenlabs.answer(ANSWER_OK)
    response = post_raw(
        client,
        b'{"driver_id": 42, "phone_number": "+14155550123", "variables": {"x": Infinity}}',
        auth_headers,
    )
    assert response.status_code == 400
    assert response.get_json()["details"] == {"variables": {"x": ["Numbers must be finite."]}}
    assert call_rows(conn) == []


def test_good_variables_of_every_kind_are_accepted(client, auth_headers, elevenlabs):
    elevenlabs.answer(ANSWER_OK)
    variables = {"load_id": "L-77", "eta_minutes": 20, "weight_t": 12.5, "urgent": False}
    response = post_call(client, {**CALL_REQUEST, "variables": variables}, auth_headers)
    assert response.status_code == 201
    sent = elevenlabs.received[0].body["conversation_initiation_client_data"]
    assert sent["dynamic_variables"] == {**variables, "call_sid": response.get_json()["call_sid"]}


UNAUTHORISED = {
    "no header": {},
    "wrong token": {"Authorization": "Bearer not-the-token"},
    "empty bearer": {"Authorization": "Bearer "},
    "other scheme": {"Authorization": f"Basic {API_TOKEN}"},
    "token without scheme": {"Authorization": API_TOKEN},
    "token with a prefix": {"Authorization": f"Bearer x{API_TOKEN}"},
    "non-ASCII token": {"Authorization": "Bearer t\u00f6ken"},
}


@pytest.mark.parametrize("headers", UNAUTHORISED.values(), ids=UNAUTHORISED)
def test_missing_or_wrong_token_is_401_and_nothing_written(client, elevenlabs, conn, headers):
    elevenlabs.answer(ANSWER_OK)
    response = post_call(client, CALL_REQUEST, headers)

    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert call_rows(conn) == []
    assert elevenlabs.received == []


def test_a_bad_body_without_a_token_is_401_not_400(client, conn):
    assert post_call(client, {"driver_id": "x"}, {}).status_code == 401


def test_every_rotated_token_is_accepted(make_client, elevenlabs):
    elevenlabs.answer(ANSWER_OK, fresh_ids=True)
    client = make_client(API_TOKENS=["old-token", "new-token"])
    for token in ("old-token", "new-token"):
        headers = {"Authorization": f"bearer {token}"}
        assert post_call(client, CALL_REQUEST, headers).status_code == 201


def test_no_configured_tokens_accepts_no_one(make_client, conn):
    client = make_client(API_TOKENS=[])
    response = post_call(client, CALL_REQUEST, {"Authorization": "Bearer any-token"})
    assert response.status_code == 401
    assert call_rows(conn) == []


def test_database_unreachable_is_503_and_elevenlabs_is_not_called(
    app_config, create_database, cut_off_database, auth_headers, elevenlabs
):
    elevenlabs.answer(ANSWER_OK)
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})
    try:
        # Take the database away under the running app, as the health check test does.
        cut_off_database(url)
        response = post_call(app.test_client(), CALL_REQUEST, auth_headers)
    finally:
        app.extensions["db_pool"].close()

    assert response.status_code == 503
    assert response.get_json()["error"] == "database_unavailable"
    assert elevenlabs.received == []


def counted(name: str, **labels) -> float:
    """Return a counter's value in this process's metrics (0 before its first count)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def allow_connections_again(server_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )


@pytest.mark.parametrize(
    "answer, status, placed",
    [(ANSWER_OK, 200, True), (ERROR_429_BUSY, 429, False)],
    ids=["elevenlabs-placed-it", "elevenlabs-refused"],
)
def test_outcome_that_cannot_be_recorded_is_503_naming_the_call_and_whether_it_was_placed(
    app_config,
    create_database,
    cut_off_database,
    server_url,
    auth_headers,
    elevenlabs,
    answer,
    status,
    placed,
):
    url = create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in load_chain():
            upgrade(conn, migration, Run(out=lambda line: None))
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})

    # The database goes away while ElevenLabs is dialling (longer than the pool trusts an idle
    # connection without a ping): the row is written, the answer not.
    def database_goes_away(seen):
        cut_off_database(url)
        time.sleep(db.ALIVE_BYPASS_SECONDS + 0.1)

    elevenlabs.answer(answer, status=status, on_request=database_goes_away)
    kind = "ok" if placed else "rate_limited"
    before = (
        counted("elevenlabs_requests_total", outcome=kind),
        counted("calls_created_total", status="initiating"),
    )
    try:
        response = post_call(app.test_client(), CALL_REQUEST, auth_headers)
    finally:
        app.extensions["db_pool"].close()
        allow_connections_again(server_url, url)
    # ElevenLabs' answer is counted, and the call by the status it is left in.
    after = (
        counted("elevenlabs_requests_total", outcome=kind),
        counted("calls_created_total", status="initiating"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)

    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "outcome_not_recorded"
    details = body["details"]
    assert details["placed"] is placed
    assert details["call_sid"] == elevenlabs.received[0].call_sid
    with psycopg.connect(url) as conn:
        [row] = call_rows(conn)
    assert row["call_sid"] == details["call_sid"]
    assert row["status"] == "initiating"  # what `python -m ops stuck` lists
    if placed:
        assert details["conversation_id"] == ANSWER_OK["conversation_id"]
    else:
        assert "system_busy" in details["reason"]


def test_a_database_that_refuses_the_insert_is_503_and_elevenlabs_is_not_called(
    app_config, database_url, conn, auth_headers, elevenlabs
):
    elevenlabs.answer(ANSWER_OK)
    # The service's connections carry a lock timeout, as ALTER ROLE … SET gives them.
    url = make_conninfo(database_url, options="-c lock_timeout=300ms")
    app = create_app({**app_config, "DATABASE_URL": url})
    try:
        with psycopg.connect(database_url) as holder:
            holder.execute("LOCK TABLE calls IN SHARE MODE")  # blocks inserts, not reads
            response = post_call(app.test_client(), CALL_REQUEST, auth_headers)
            holder.rollback()
    finally:
        app.extensions["db_pool"].close()

    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "database_error"
    assert "lock timeout" in body["details"]["reason"]
    assert elevenlabs.received == []
    assert call_rows(conn) == []


@pytest.mark.parametrize("restart", [False, True], ids=["one-backend-killed", "database-restart"])
def test_a_call_whose_pooled_connection_died_is_503_with_no_row_and_nothing_dialled(
    app_config, database_url, auth_headers, elevenlabs, monkeypatch, cut_off_database, restart
):
    elevenlabs.answer(ANSWER_OK)
    app = create_app({**app_config, "DB_POOL_MIN_SIZE": 1, "DB_POOL_MAX_SIZE": 1})
    # The one pooled connection was in use a moment ago: it is handed out without a ping.
    monkeypatch.setattr(db, "ALIVE_BYPASS_SECONDS", 3600)
    client = app.test_client()
    client.get("/driver_data/calls/cs_nobody", headers=auth_headers)
    try:
        with app.extensions["db_pool"].connection() as pooled:
            pid = pooled.info.backend_pid
        # Then it dies idle in the pool: an idle-timeout kill, or a restart that takes them all.
        if restart:
            cut_off_database(database_url, refuse_new=False)
        else:
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        response = post_call(client, CALL_REQUEST, auth_headers)
    finally:
        app.extensions["db_pool"].close()

    # The insert is the request's first statement: it fails whole, before anything is sent.
    assert response.status_code == 503
    assert response.get_json()["error"] == "database_unavailable"
    assert elevenlabs.received == []
    with psycopg.connect(database_url) as after:  # the restart took the test's connection too
        assert call_rows(after) == []
