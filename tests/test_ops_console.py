"""The ops console: who may see it, and that it shows what the operator must watch."""

import base64
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
import webhook_signing
from console_support import AUTH, add_delivery, plan, rows
from credentials import API_TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from console import queries
from models import calls


def make_call(conn, driver_id=7, *, conversation_id=None):
    """Create a call as the API does; with a conversation_id, as ElevenLabs answered."""
    return webhook_signing.make_call(
        conn, conversation_id, driver_id=driver_id, twilio_call_sid="CA" + "0" * 32
    )


def add_line(conn, conversation_id, speaker, message, second=0):
    """Store a transcript line as the webhook does."""
    conn.execute(
        'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
        "VALUES (%s, %s, %s, %s)",
        (conversation_id, speaker, message, datetime(2026, 11, 25, 12, 0, second, tzinfo=UTC)),
    )


@pytest.mark.parametrize("path", ["/ops/", "/ops/calls", "/ops/calls/cs_whatever"])
def test_console_without_credentials_is_401_with_a_basic_challenge(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="ops console"')
    assert "API token" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"ops:not-the-token").decode(),
        "Basic " + base64.b64encode(f"{API_TOKEN}:".encode()).decode(),  # token as user name
        "Bearer not-the-token",
        "Basic %%%",
        f"Bearer {API_TOKEN}",  # Basic only, as documented
        f"Foo {API_TOKEN}",
        f"Token {API_TOKEN}",
    ],
)
def test_console_with_a_wrong_token_or_scheme_is_401(client, header):
    assert client.get("/ops/calls", headers={"Authorization": header}).status_code == 401


def test_console_accepts_the_token_as_basic_password(client):
    assert client.get("/ops/calls", headers=AUTH).status_code == 200


def test_console_front_page_is_the_overview_and_the_nav_marks_it(client):
    response = client.get("/ops/", headers=AUTH)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<a href="/ops/" aria-current="page">Overview</a>' in html
    assert html.count('aria-current="page"') == 2  # the page, and its window (24 h)


@pytest.mark.parametrize(
    ("path", "current"),
    [
        ("/ops/calls", "Calls"),
        ("/ops/deliveries", "Webhook deliveries"),
        ("/ops/deliveries?outcome=rejected", "rejected"),
    ],
)
def test_nav_marks_the_page_the_operator_is_on(client, path, current):
    html = client.get(path, headers=AUTH).get_data(as_text=True)
    marked = [
        part.split(">", 1)[1].split("<", 1)[0] for part in html.split('aria-current="page"')[1:]
    ]
    assert marked == [current]


def test_call_page_is_under_calls_in_the_nav(client, conn):
    call = make_call(conn)
    html = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)
    assert 'aria-current="page">Calls</a>' in html


def test_list_shows_the_latest_calls_newest_first(client, conn):
    first = make_call(conn, conversation_id="conv_a")
    second = make_call(conn)
    calls.mark_failed(conn, second.call_sid, reason="ElevenLabs said 429 system_busy")
    response = client.get("/ops/calls", headers=AUTH)
    assert response.status_code == 200
    assert rows(response) == [second.call_sid, first.call_sid]
    html = response.get_data(as_text=True)
    assert "Dana" in html and "failed" in html and "ElevenLabs said 429 system_busy" in html


def test_list_counts_transcript_lines_and_deliveries_per_call(client, conn):
    call = make_call(conn, conversation_id="conv_counts")
    other = make_call(conn, conversation_id="conv_other")
    add_line(conn, "conv_counts", "agent", "Hello", 1)
    add_line(conn, "conv_counts", "user", "Hi", 2)
    add_delivery(conn, call_sid=call.call_sid, outcome="accepted", status=200)
    add_delivery(conn, call_sid=call.call_sid, outcome="duplicate", status=200)
    # Rollback path: the delivery names only the conversation.
    add_delivery(conn, conversation_id="conv_counts", outcome="accepted", status=200)
    add_delivery(conn, call_sid=call.call_sid, outcome="rejected_malformed", status=400)
    # Naming both identifiers, it is still one delivery.
    add_delivery(
        conn, call_sid=call.call_sid, conversation_id="conv_counts", outcome="accepted", status=200
    )
    html = client.get("/ops/calls", headers=AUTH).get_data(as_text=True)
    row = html.split(f'data-call-sid="{call.call_sid}"')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1] for c in row.split('<td class="num')[1:]]
    assert [c.split("<", 1)[0] for c in cells] == ["2", "4", "1"]
    other_row = html.split(f'data-call-sid="{other.call_sid}"')[1].split("</tr>")[0]
    assert [c.split(">", 1)[1].split("<")[0] for c in other_row.split('<td class="num')[1:]] == [
        "0",
        "0",
        "0",
    ]


def test_list_filters_by_status_and_driver(client, conn):
    seven = make_call(conn, driver_id=7, conversation_id="conv_7")
    eight = make_call(conn, driver_id=8)
    calls.mark_failed(conn, eight.call_sid, reason="busy")
    nine = make_call(conn, driver_id=9)

    assert rows(client.get("/ops/calls?status=failed", headers=AUTH)) == [eight.call_sid]
    assert rows(client.get("/ops/calls?status=initiating", headers=AUTH)) == [nine.call_sid]
    assert rows(client.get("/ops/calls?driver=7", headers=AUTH)) == [seven.call_sid]
    assert rows(client.get("/ops/calls?driver=7&status=failed", headers=AUTH)) == []
    # An empty field in the filter form means "any".
    assert len(rows(client.get("/ops/calls?status=&driver=&phone=&from=", headers=AUTH))) == 3


def test_list_pages_by_id_towards_older_calls(client, conn):
    made = [make_call(conn, driver_id=n).call_sid for n in range(5)]
    first = client.get("/ops/calls?limit=2", headers=AUTH)
    assert rows(first) == [made[4], made[3]]
    html = first.get_data(as_text=True)
    older = html.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    assert "before=" in older
    second = client.get(older + "&limit=2", headers=AUTH)
    assert rows(second) == [made[2], made[1]]
    last = client.get(older.replace("before=4", "before=2") + "&limit=2", headers=AUTH)
    assert rows(last) == [made[0]]
    assert "older »" not in last.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=<script>", "status"),
        ("status=done", "status"),
        ("status=%00", "status"),
        ("driver=99999999999999999999", "driver"),
        ("driver=%00", "driver"),
        ("driver=" + "a" * 101, "driver"),
        ("phone=12", "phone"),
        ("phone=0123x", "phone"),
        ("phone=1234567890123456", "phone"),
        ("phone=%EF%BC%91%EF%BC%92%EF%BC%93", "phone"),  # full-width digits
        ("call_sid=cs%20x", "call_sid"),
        ("call_sid=" + "a" * 129, "call_sid"),
        ("from=2026-13-01", "from"),
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("to=9999-12-31", "to"),  # its end, the next day, is past what a date can hold
        ("from=2026-11-26&to=2026-11-25", "to"),
        ("outcome=maybe", "outcome"),
        ("before=0", "before"),
        ("before=x", "before"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a full-width digit one
    ],
)
def test_list_with_a_bad_filter_is_400_naming_it(client, query, field):
    response = client.get(f"/ops/calls?{query}", headers=AUTH)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "invalid_filter" in html
    assert f"<dt>{field}</dt>" in html
    assert "<script>" not in html


def test_call_page_shows_lifecycle_transcript_and_deliveries_including_rejected(client, conn):
    call = make_call(conn, conversation_id="conv_detail")
    calls.mark_completed(
        conn,
        call.call_sid,
        call_duration_secs=42,
        termination_reason="agent hung up",
        twilio_call_sid=None,
    )
    add_line(conn, "conv_detail", "agent", "Are you on schedule?", 1)
    add_line(conn, "conv_detail", "user", "Ten minutes late.", 2)
    add_delivery(conn, call_sid=call.call_sid, outcome="accepted", status=200)
    add_delivery(
        conn,
        call_sid=call.call_sid,
        outcome="rejected_malformed",
        status=400,
        reason="timestamp is not ISO 8601 or unix seconds",
    )
    response = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in ("completed", "agent hung up", "42 s", "conv_detail", "ElevenLabs called"):
        assert text in html
    assert html.index("Are you on schedule?") < html.index("Ten minutes late.")
    assert '<li class="line agent">' in html and '<li class="line driver">' in html
    assert "rejected_malformed" in html and "timestamp is not ISO 8601" in html
    assert "+14155550123" not in html  # the number is masked
    assert "0123" in html


def test_call_page_of_a_failed_call_shows_the_reason_and_no_transcript(client, conn):
    call = make_call(conn)
    calls.mark_failed(conn, call.call_sid, reason="ElevenLabs answered 401 invalid_api_key")
    add_delivery(
        conn,
        call_sid=call.call_sid,
        outcome="no_conversation_id",
        status=400,
        reason="the call has no conversation_id yet",
    )
    html = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)
    assert "invalid_api_key" in html
    assert "No conversation yet" in html
    assert "no_conversation_id" in html


def test_transcript_markup_is_shown_as_text(client, conn):
    call = make_call(conn, conversation_id="conv_xss")
    add_line(conn, "conv_xss", "agent", "<script>window.__xss=1</script>", 1)
    add_line(conn, "conv_xss", "<b>user</b>", '<img src=x onerror="window.__xss=1">', 2)
    html = client.get(f"/ops/calls/{call.call_sid}", headers=AUTH).get_data(as_text=True)
    assert "<script>window" not in html and "<img src=x" not in html and "<b>user" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html


@pytest.mark.parametrize("call_sid", ["cs_unknown", "x" * 500, "a%00b", "%E2%80%AE"])
def test_unknown_or_impossible_call_is_404(client, call_sid):
    response = client.get(f"/ops/calls/{call_sid}", headers=AUTH)
    assert response.status_code == 404
    assert "not_found" in response.get_data(as_text=True)


def test_pages_forbid_inline_script_and_caching(client, conn):
    call = make_call(conn)
    for path in ("/ops/calls", f"/ops/calls/{call.call_sid}", "/ops/calls?status=bad", "/ops/"):
        headers = client.get(path, headers=AUTH).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["Cache-Control"] == "no-store"
    assert "unsafe-inline" not in client.get("/ops/calls").headers["Content-Security-Policy"]


def test_fragment_is_only_the_live_part(client, conn):
    call = make_call(conn, conversation_id="conv_frag")
    listing = client.get("/ops/calls?fragment=1", headers=AUTH).get_data(as_text=True)
    assert listing.lstrip().startswith("<table") and "<html" not in listing
    assert call.call_sid in listing
    detail = client.get(f"/ops/calls/{call.call_sid}?fragment=1", headers=AUTH)
    assert "<html" not in detail.get_data(as_text=True)
    assert "conv_frag" in detail.get_data(as_text=True)
    for page in ("/ops/deliveries", "/ops/batches"):  # every page that refreshes itself
        fragment = client.get(f"{page}?fragment=1", headers=AUTH)
        assert fragment.status_code == 200
        assert "<html" not in fragment.get_data(as_text=True)


def test_console_queries_use_indexes_not_table_scans(conn):
    sids, convs = ["cs_a", "cs_b"], ["conv_a", None]
    counts = plan(conn, queries.PAGE_COUNTS, (sids, convs))
    assert "webhook_deliveries_call_sid_idx" in counts
    assert "webhook_deliveries_conversation_id_idx" in counts
    one_call = {"call_sid": "cs_a", "conversation_id": "conv_a", "preview": 10, "limit": 5}
    deliveries = plan(conn, queries.CALL_DELIVERIES, one_call)
    for found in (counts, deliveries):
        assert "Seq Scan" not in found, found


def test_deliveries_page_lists_the_newest_first_with_the_call_they_named(client, conn):
    call = make_call(conn, conversation_id="conv_dl")
    add_delivery(conn, call_sid=call.call_sid, outcome="accepted", status=200)
    add_delivery(
        conn, call_sid="cs_nobody", outcome="unknown_call", status=400, reason="no call matches"
    )
    response = client.get("/ops/deliveries", headers=AUTH)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.index("cs_nobody") < html.index(call.call_sid)
    assert f'href="/ops/calls/{call.call_sid}"' in html
    assert "unknown_call" in html and "no call matches" in html


def test_deliveries_page_filters_rejected_and_exact_outcomes(client, conn):
    add_delivery(conn, call_sid="cs_ok", outcome="accepted", status=200)
    add_delivery(conn, call_sid="cs_unknown", outcome="unknown_call", status=400)
    add_delivery(conn, call_sid="cs_sig", outcome="rejected_signature", status=401)
    add_delivery(conn, call_sid="cs_dup", outcome="duplicate", status=200)

    def shown(query):
        html = client.get(f"/ops/deliveries?{query}", headers=AUTH).get_data(as_text=True)
        return [sid for sid in ("cs_ok", "cs_unknown", "cs_sig", "cs_dup") if sid in html]

    assert shown("outcome=rejected") == ["cs_unknown", "cs_sig"]
    assert shown("outcome=duplicate") == ["cs_dup"]
    assert shown("outcome=") == ["cs_ok", "cs_unknown", "cs_sig", "cs_dup"]


def test_deliveries_page_pages_by_id(client, conn):
    for n in range(3):
        add_delivery(conn, call_sid=f"cs_page_{n}", outcome="unknown_call", status=400)
    first = client.get("/ops/deliveries?outcome=rejected&limit=2", headers=AUTH)
    html = first.get_data(as_text=True)
    assert "cs_page_2" in html and "cs_page_1" in html and "cs_page_0" not in html
    older = html.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    second = client.get(older + "&limit=2", headers=AUTH).get_data(as_text=True)
    assert "cs_page_0" in second and "cs_page_1" not in second


@pytest.mark.parametrize(
    ("query", "field"),
    [("outcome=<b>", "outcome"), ("outcome=ok", "outcome"), ("before=-3", "before")],
)
def test_deliveries_page_with_a_bad_filter_is_400_naming_it(client, query, field):
    response = client.get(f"/ops/deliveries?{query}", headers=AUTH)
    assert response.status_code == 400
    assert f"<dt>{field}</dt>" in response.get_data(as_text=True)


def test_deliveries_page_needs_credentials(client):
    assert client.get("/ops/deliveries").status_code == 401


def test_rejected_deliveries_are_read_through_the_outcome_index(conn):
    params = {"before": 2**63 - 1, "outcomes": ["unknown_call"], "preview": 10, "limit": 5}
    found = plan(conn, queries.LATEST_DELIVERIES_OF, params)
    assert "webhook_deliveries_outcome_received_at_idx" in found, found
    newest = plan(conn, queries.LATEST_DELIVERIES, params)
    assert "webhook_deliveries_pkey" in newest, newest


def test_console_with_the_database_unreachable_is_503_not_500(
    app_config, create_database, cut_off_database
):
    url = create_database()
    app = create_app({**app_config, "DATABASE_URL": url, "DB_POOL_TIMEOUT": 1})
    try:
        cut_off_database(url)
        response = app.test_client().get("/ops/calls", headers=AUTH)
        assert response.status_code == 503
        assert "database_unavailable" in response.get_data(as_text=True)
    finally:
        app.extensions["db_pool"].close()


FILTER_NAMES = st.sampled_from(
    ["status", "driver", "phone", "call_sid", "from", "to", "before", "limit", "outcome", "window"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.lists(st.tuples(FILTER_NAMES, st.text(max_size=30)), max_size=4),
    call_sid=st.text(min_size=1, max_size=300),
)
def test_console_answers_any_input_with_a_page_or_a_4xx(client, query, call_sid):
    paths = ("/ops/", "/ops/calls", "/ops/calls.csv", "/ops/deliveries")
    for path in (*paths, "/ops/calls/" + quote(call_sid, safe="")):
        response = client.get(f"{path}?{urlencode(query)}", headers=AUTH)
        # 308: werkzeug merging the slashes of a call_sid such as "/0", before any view.
        assert response.status_code in (200, 308, 400, 404), (path, query)
