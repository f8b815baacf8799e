"""The console's calls list: what an operator searches by, what each row shows, and its CSV."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from console_support import ANSWERS, AUTH, complete, make_searchable_call, plan, rows
from werkzeug.datastructures import MultiDict

from console import search
from models import calls


def found(client, query) -> list[str]:
    """Return the call_sids the list shows for this query string."""
    response = client.get(f"/ops/calls?{query}", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return rows(response)


@pytest.mark.parametrize(
    "typed", ["0123", "550123", "555-0123", "+1 (415) 555-0123", "14155550123"]
)
def test_search_by_the_last_digits_of_a_phone_number(client, conn, typed):
    wanted = make_searchable_call(conn, "+14155550123")
    make_searchable_call(conn, "+14155559123")
    make_searchable_call(conn, "+10123555000")  # the digits, but not at the end
    assert found(client, f"phone={typed}") == [wanted.call_sid]


def test_search_by_driver_id_or_the_start_of_a_name_in_any_case(client, conn):
    dana = make_searchable_call(conn, driver_id=42, name="Dana Whitfield")
    make_searchable_call(conn, driver_id=7, name="Dan")
    percent = make_searchable_call(conn, driver_id=8, name="100% Freight")
    assert found(client, "driver=42") == [dana.call_sid]
    assert len(found(client, "driver=dAn")) == 2
    assert found(client, "driver=dana") == [dana.call_sid]
    # LIKE's wildcards are the characters typed, not wildcards.
    assert found(client, "driver=100%25") == [percent.call_sid]
    assert found(client, "driver=_ana") == []


def test_search_by_call_sid_shows_that_call_only(client, conn):
    wanted = make_searchable_call(conn)
    make_searchable_call(conn)
    assert found(client, f"call_sid={wanted.call_sid}") == [wanted.call_sid]
    assert found(client, "call_sid=cs_nobody") == []


def test_date_range_takes_whole_utc_days_both_ends_included(client, conn):
    day = datetime(2026, 11, 25, tzinfo=UTC)
    before = make_searchable_call(conn, created=day.replace(day=24, hour=23, minute=59))
    first = make_searchable_call(conn, created=day)
    last = make_searchable_call(conn, created=day.replace(day=26, hour=23, minute=59, second=59))
    make_searchable_call(conn, created=day.replace(day=27))
    assert found(client, "from=2026-11-25&to=2026-11-26") == [last.call_sid, first.call_sid]
    assert found(client, "to=2026-11-24") == [before.call_sid]


def test_filter_by_outcome_shows_calls_of_that_verdict(client, conn):
    good, bad, open_call = (
        make_searchable_call(conn),
        make_searchable_call(conn),
        make_searchable_call(conn),
    )
    complete(conn, good, "success", ANSWERS)
    complete(conn, bad, "failure", {})
    assert found(client, "outcome=success") == [good.call_sid]
    assert found(client, "outcome=failure") == [bad.call_sid]
    assert open_call.call_sid in found(client, "outcome=")


def test_what_driver_42_told_us_yesterday_in_one_search(client, conn):
    yesterday = datetime(2026, 11, 25, 15, tzinfo=UTC)
    call = make_searchable_call(conn, driver_id=42, created=yesterday)
    complete(conn, call, "success", ANSWERS)
    make_searchable_call(conn, driver_id=42, created=yesterday.replace(day=23))
    html = client.get("/ops/calls?driver=42&from=2026-11-25&to=2026-11-25", headers=AUTH)
    row = html.get_data(as_text=True).split(f'data-call-sid="{call.call_sid}"')[1].split("</tr>")[0]
    assert rows(html) == [call.call_sid]
    for shown in ("<dt>eta</dt><dd>10:40</dd>", "<dt>load_status</dt><dd>loaded</dd>", "1:16"):
        assert shown in row
    assert '<dt>location</dt><dd class="none">?</dd>' in row
    assert 'class="verdict verdict-success">success<' in row


def test_paging_keeps_the_search(client, conn):
    made = [make_searchable_call(conn, "+14155550123").call_sid for _ in range(3)]
    make_searchable_call(conn, "+14155550999")
    html = client.get("/ops/calls?phone=0123&limit=2", headers=AUTH).get_data(as_text=True)
    older = html.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    assert "phone=0123" in older
    assert rows(client.get(older + "&limit=2", headers=AUTH)) == [made[0]]


def csv_rows(client, query="") -> list[dict]:
    """Return the CSV export of the list for this query, as dicts."""
    response = client.get(f"/ops/calls.csv?{query}", headers=AUTH)
    assert response.status_code == 200
    assert response.is_streamed and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_export_round_trips_the_lists_rows(client, conn):
    done = make_searchable_call(conn, driver_id=42)
    complete(conn, done, "success", ANSWERS)
    failed = make_searchable_call(conn, "+14155559876", driver_id=7, name="Lee")
    calls.mark_failed(conn, failed.call_sid, reason="no-answer")
    listed = found(client, "limit=200")
    exported = csv_rows(client)
    assert [row["call_sid"] for row in exported] == listed
    first, second = exported
    assert first["call_sid"] == failed.call_sid
    assert (first["driver_id"], first["driver_name"], first["status"]) == ("7", "Lee", "failed")
    assert (first["failure_reason"], first["duration_secs"], first["answers"]) == (
        "no-answer",
        "",
        "",
    )
    assert first["phone_number"] == "'+1415•••9876"  # as the list masks it, defused
    assert (second["call_successful"], second["duration_secs"]) == ("success", "76")
    assert json.loads(second["answers"]) == ANSWERS
    assert second["cost_credits"] == "212"
    assert (
        datetime.fromisoformat(second["created_at"])
        == calls.by_call_sid(conn, done.call_sid).created_at
    )


def test_csv_export_takes_the_lists_search_not_its_page(client, conn):
    made = [make_searchable_call(conn, "+14155550123").call_sid for _ in range(3)]
    make_searchable_call(conn, "+14155550999")
    exported = csv_rows(client, f"phone=0123&limit=1&before={10**9}")
    assert [row["call_sid"] for row in exported] == made[::-1]


def test_csv_export_defuses_what_a_spreadsheet_would_run(client, conn):
    call = make_searchable_call(conn, name="=HYPERLINK(1)")
    complete(conn, call, "success", {"eta": "=cmd|' /C calc'!A0"})
    (row,) = csv_rows(client)
    assert row["driver_name"] == "'=HYPERLINK(1)"
    assert json.loads(row["answers"]) == {"eta": "=cmd|' /C calc'!A0"}  # JSON starts with {


def test_csv_export_with_a_bad_filter_is_400(client):
    response = client.get("/ops/calls.csv?phone=12", headers=AUTH)
    assert response.status_code == 400
    assert "<dt>phone</dt>" in response.get_data(as_text=True)


def test_csv_export_needs_credentials(client):
    assert client.get("/ops/calls.csv").status_code == 401


@pytest.fixture
def many_calls(conn):
    """Seed 5,000 calls (one in ten with an outcome) and ANALYZE: the planner judges by size."""
    conn.execute(
        """
        INSERT INTO calls (call_sid, driver_id, phone_number, driver_name, status, created_at)
        SELECT 'cs_seed_' || g, g, '+1415' || lpad(g::text, 7, '0'), 'Driver ' || g,
               'completed', now() - g * interval '1 minute'
          FROM generate_series(1, 5000) AS g
        """
    )
    conn.execute(
        """
        INSERT INTO call_outcomes (call_id, call_successful)
        SELECT id, CASE WHEN id % 50 = 0 THEN 'failure' ELSE 'success' END
          FROM calls WHERE id % 10 = 0
        """
    )
    conn.execute("ANALYZE calls")
    conn.execute("ANALYZE call_outcomes")


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("phone=0123", "calls_phone_suffix_idx"),
        ("driver=dan", "calls_driver_name_idx"),
        ("call_sid=cs_x", "calls_call_sid_key"),
        ("outcome=failure", "call_outcomes_verdict_idx"),
        ("from=2026-11-25", "calls_created_at_idx"),
    ],
)
def test_searches_use_their_index_not_a_table_scan(conn, many_calls, query, index):
    filters = search.parse_filters(MultiDict([query.split("=")]))
    sql, params = search.list_query(filters, limit=51)
    # EXPLAIN plans the literal values, as the console's unprepared searches are planned.
    found = plan(conn, sql.as_string(conn), params)
    assert index in found and "Seq Scan" not in found, found
