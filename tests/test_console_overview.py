"""The console's front page: the last 24 hours or 7 days of calls and webhooks, charted."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from console_support import ANSWERS, AUTH, add_delivery, complete, make_searchable_call

from console import hours, overview
from models import calls

NOW = datetime.now(UTC)
PATIENCE_SECONDS = 180  # an upper bound on a slow machine, not a speed target


def at(conn, call, hours_ago: float):
    """Move a call's creation this many hours back."""
    created = NOW - timedelta(hours=hours_ago)
    conn.execute("UPDATE calls SET created_at = %s WHERE id = %s", (created, call.id))


def figure(html: str, name: str) -> str:
    """Return the text of one of the page's figures."""
    return html.split(f'id="{name}">', 1)[1].split("<", 1)[0].strip()


# The rollup as the worker leaves it: none yet, recounted now, or stopped 2 hours ago.
ROLLED = {"not rolled up": None, "rolled up now": 0, "rolled up 2 hours ago": 2}


@pytest.mark.parametrize("rolled_hours_ago", ROLLED.values(), ids=ROLLED.keys())
def test_overview_counts_the_last_24_hours_by_outcome(client, conn, rolled_hours_ago):
    for seconds, answers in ((60, ANSWERS), (100, {"eta": None}), (200, ANSWERS)):
        complete(conn, make_searchable_call(conn), "success", answers, seconds=seconds)
    for reason in ("no-answer", "busy", "busy", "ElevenLabs said 429 system_busy"):
        calls.mark_failed(conn, make_searchable_call(conn).call_sid, reason=reason)
    make_searchable_call(conn)  # still initiating
    add_delivery(conn, call_sid="cs_x", outcome="unknown_call", status=400)
    add_delivery(conn, call_sid="cs_y", outcome="accepted", status=200)
    # All in one hour, an hour ago: a clock turning the hour meanwhile moves no call.
    an_hour_ago = NOW - timedelta(hours=1)
    conn.execute("UPDATE calls SET created_at = %s", (an_hour_ago,))
    conn.execute("UPDATE webhook_deliveries SET received_at = %s", (an_hour_ago,))
    at(conn, make_searchable_call(conn), 30)  # outside the window
    if rolled_hours_ago is not None:
        hours.roll_up(conn, now=NOW - timedelta(hours=rolled_hours_ago))

    html = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert figure(html, "total-calls") == "8"
    assert figure(html, "completed-calls") == "3"
    assert figure(html, "median-duration") == "1:40"
    assert figure(html, "answer-rate") == "67%"  # two of three completed calls told us something
    assert figure(html, "webhook-rejections") == "1"
    hour = an_hour_ago.strftime("%a %H:00 UTC")
    for count, label in (
        (3, "completed"),
        (1, "no answer"),
        (2, "busy"),
        (1, "failed (other reasons)"),
        (1, "not ended yet"),
        (1, "webhooks rejected"),
    ):
        assert f"<title>{hour}: {count} {label}</title>" in html
    assert '<td>busy</td><td class="num">2</td>' in html


def test_overview_of_7_days_takes_calls_the_24_hours_leave_out(client, conn):
    at(conn, make_searchable_call(conn), 1)
    at(conn, make_searchable_call(conn), 24 * 3)
    at(conn, make_searchable_call(conn), 24 * 8)
    day = client.get("/ops/?window=24h", headers=AUTH).get_data(as_text=True)
    week = client.get("/ops/?window=7d", headers=AUTH).get_data(as_text=True)
    assert (figure(day, "total-calls"), figure(week, "total-calls")) == ("1", "2")
    assert 'aria-current="page">last 7 days</a>' in week


def test_overview_with_no_calls_says_so_without_dividing_by_zero(client):
    html = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert figure(html, "total-calls") == "0"
    assert figure(html, "median-duration") == "—" and figure(html, "answer-rate") == "—"
    assert "No call failed." in html and "<rect" not in html


@pytest.mark.parametrize("window", ["1h", "30d", "<b>"])
def test_overview_with_an_unknown_window_is_400_naming_it(client, window):
    response = client.get(f"/ops/?window={window}", headers=AUTH)
    assert response.status_code == 400
    assert "<dt>window</dt>" in response.get_data(as_text=True)


def test_bars_stack_in_order_and_scale_to_a_round_top():
    hours = [datetime(2026, 11, 25, h, tzinfo=UTC) for h in range(2)]
    chart = overview.stacked_bars(
        hours, {"a": [3, 0], "b": [1, 4]}, {"a": "A", "b": "B"}, width=244
    )
    assert [c for _, c in chart.counts] == [0, 5]  # top: 4 rounded up to 5; no 2.5 line
    a, b, b2 = chart.bars
    assert (a.series, b.series, b2.series) == ("a", "b", "b")
    assert a.y + a.height == 178 and b.y + b.height == a.y  # b sits on a
    assert a.height == pytest.approx(3 / 5 * 170) and b2.height == pytest.approx(4 / 5 * 170)
    assert b2.x == pytest.approx(44 + 100 + 0.5)


def test_the_count_axis_has_a_middle_line_only_on_a_whole_number():
    hours = [datetime(2026, 11, 25, tzinfo=UTC)]
    assert [c for _, c in overview.stacked_bars(hours, {"a": [7]}, {"a": "A"}).counts] == [0, 5, 10]
    assert [c for _, c in overview.stacked_bars(hours, {"a": [0]}, {"a": "A"}).counts] == [0, 1]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (450, 500)])
def test_the_count_axis_ends_on_a_round_number(value, top):
    assert overview.nice_ceiling(value) == top


def test_a_call_ending_after_its_hour_was_rolled_up_counts_at_the_next_recount(client, conn):
    call = make_searchable_call(conn)
    at(conn, call, 3)
    hours.roll_up(conn, now=NOW)
    html = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert (figure(html, "total-calls"), figure(html, "completed-calls")) == ("1", "0")

    complete(conn, call, "success", ANSWERS, seconds=95)  # a late post-call webhook
    hours.roll_up(conn, now=NOW)  # the worker's next minute

    html = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert (figure(html, "total-calls"), figure(html, "completed-calls")) == ("1", "1")
    assert (figure(html, "median-duration"), figure(html, "answer-rate")) == ("1:35", "100%")
    assert "not ended yet</title>" not in html


def test_a_rollup_its_worker_stopped_recounting_is_not_read(client, conn):
    call = make_searchable_call(conn)
    at(conn, call, 3)
    hours.roll_up(conn, now=NOW)
    conn.execute("UPDATE call_hours SET counted_at = now() - interval '6 minutes'")
    complete(conn, call, "success", ANSWERS, seconds=95)  # and no recount since

    html = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert (figure(html, "total-calls"), figure(html, "completed-calls")) == ("1", "1")
    assert figure(html, "median-duration") == "1:35"


def test_rollup_holds_the_closed_hours_of_the_last_7_days_only(conn):
    for hours_ago in (0, 1, 24 * 7 - 1, 24 * 7 + 1):
        at(conn, make_searchable_call(conn), hours_ago)
    hours.roll_up(conn, now=NOW)
    hours.roll_up(conn, now=NOW)  # recounted whole, never added twice
    current = NOW.replace(minute=0, second=0, microsecond=0)
    rolled = conn.execute("SELECT hour, calls FROM call_hours ORDER BY hour").fetchall()
    assert rolled == [(current - timedelta(hours=h), 1) for h in (24 * 7 - 1, 1)]
    assert hours.rolled_until(conn) == current


def test_a_running_dispatch_worker_recounts_the_overview(conn, start_worker):
    call = make_searchable_call(conn)
    complete(conn, call)  # ended: nothing for the worker's reconcile to settle
    at(conn, call, 2)
    worker = start_worker()
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not conn.execute("SELECT calls FROM call_hours").fetchall():
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        assert time.monotonic() < deadline, "the worker never recounted the overview"
        time.sleep(0.2)
    assert conn.execute("SELECT status, calls FROM call_hours").fetchall() == [("completed", 1)]


@pytest.mark.parametrize(
    ("histogram", "middle"),
    [({}, None), ({95: 1}, 95), ({60: 1, 100: 1, 200: 1}, 100), ({60: 1, 100: 1}, 80),
     ({20: 3, 40: 1}, 20), ({20: 2, 40: 2}, 30)],
)  # fmt: skip
def test_median_duration_is_the_middle_call_or_the_mean_of_the_middle_two(histogram, middle):
    assert overview.median(histogram) == middle


def test_overview_reads_rolled_hours_by_their_key_and_live_ones_through_indexes(conn):
    conn.execute("SET enable_seqscan = off")  # tiny test tables would be scanned otherwise
    params = {"since": NOW - timedelta(days=7), "from": NOW, "until": NOW}
    for query, indexes in (
        (overview.CALLS_SEEN, ("call_hours_key", "calls_created_at_idx", "call_outcomes_answered")),
        (overview.DURATIONS_SEEN, ("call_hour_durations_pkey", "calls_created_at_idx")),
    ):
        found = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))
        assert all(index in found for index in indexes) and "Seq Scan" not in found, found
    since = {"since": NOW - timedelta(days=7), "rejected": overview.REJECTED}
    found = "\n".join(r[0] for r in conn.execute("EXPLAIN " + overview.REJECTIONS_BY_HOUR, since))
    assert "webhook_deliveries_outcome_received_at_idx" in found, found
