"""Bench the ops console on a large database: each page's and each search's median, the CSV export.

    python bench/console_at_scale.py [--calls 1000000] [--repeat 25]

Starts a throwaway embedded PostgreSQL (migrations applied) and seeds it with
``--calls`` calls spread over 90 days (70% completed with an outcome and
answers, the rest failed by reason or still open), three transcript lines and
one webhook delivery per call (5% rejected), and recounts the overview's hourly
rollup as the dispatch worker does every minute; then serves the app under
gunicorn (one worker) and asks each page ``--repeat`` times, one request at a
time. Prints each page's median and slowest time; then the overview's again with
every hour read live (the rollup aged, as with the worker stopped) and the ratio;
then exports every call as CSV and prints rows/s and the worker's peak memory
(VmHWM) before and after the export.
Target: every median <= 50 ms; the export's memory flat.
"""

import argparse
import base64
import http.client
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import running_app, throwaway_database

from console import hours

TOKEN = "bench-token-0123456789"  # noqa: S105  (a throwaway server's token)
# The console signs in with HTTP Basic only: any user name, a token as the password.
AUTH = {"Authorization": "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()}
DAYS = 90

# One statement per table, generated in the database: minutes, not hours, for a million.
SEED = [
    f"""
    INSERT INTO calls (call_sid, driver_id, driver_name, phone_number, conversation_id, status,
                       failure_reason, created_at, call_duration_secs, termination_reason)
    SELECT 'cs_' || md5(i::text), 1 + mod(i, 5000),
           (ARRAY['Dana', 'Lee', 'Sam', 'Ana', 'Joe'])[1 + mod(i, 5)] || ' ' || mod(i, 5000),
           '+1415' || lpad(mod(i::bigint * 7919, 10000000)::text, 7, '0'),
           'conv_' || i,
           CASE WHEN mod(i, 20) < 14 THEN 'completed'
                WHEN mod(i, 20) < 18 THEN 'failed' ELSE 'initiated' END,
           CASE mod(i, 20) WHEN 14 THEN 'no-answer' WHEN 15 THEN 'no-answer' WHEN 16 THEN 'busy'
                       WHEN 17 THEN 'ElevenLabs said 429 system_busy' END,
           now() - make_interval(secs => (%(calls)s - i) * {DAYS} * 86400.0 / %(calls)s),
           CASE WHEN mod(i, 20) < 14 THEN 20 + mod(i, 300) END,
           CASE WHEN mod(i, 20) < 14 THEN 'end_call tool was called.' END
      FROM generate_series(1, %(calls)s) AS i
    """,
    """
    INSERT INTO call_outcomes (call_id, call_successful, summary, data_collection, cost_credits)
    SELECT id, CASE WHEN id % 10 = 0 THEN 'failure' ELSE 'success' END,
           'Driver is about ' || id % 60 || ' minutes out.',
           jsonb_build_object('eta', (10 + id % 8) || ':' || lpad((id % 60)::text, 2, '0'),
                              'load_status', 'loaded', 'location', NULL),
           200 + id % 50
      FROM calls WHERE status = 'completed'
    """,
    """
    INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp")
    SELECT c.conversation_id, s.speaker, s.message, c.created_at + s.after
      FROM calls c, (VALUES ('agent', 'Hi, dispatch here. Where are you?', interval '0 s'),
                            ('user', 'Just passed exit 42 on I-80.', interval '5 s'),
                            ('agent', 'Thanks, I will tell the dock.', interval '11 s'))
                    AS s (speaker, message, after)
    """,
    """
    INSERT INTO webhook_deliveries (received_at, endpoint, signature_valid, body, body_size,
                                    call_sid, conversation_id, outcome, http_status)
    SELECT created_at + interval '20 s', 'post-call', true, '\\x7b7d', 2, call_sid,
           conversation_id,
           CASE WHEN id % 20 = 3 THEN 'unknown_call' ELSE 'accepted' END,
           CASE WHEN id % 20 = 3 THEN 400 ELSE 200 END
      FROM calls
    """,
]


def seed(url: str, calls: int) -> None:
    """Fill the database, then analyse it as autovacuum would have by then."""
    with psycopg.connect(url, autocommit=True) as conn:
        for n, statement in enumerate(SEED):
            started = time.monotonic()
            done = conn.execute(statement, {"calls": calls} if n == 0 else None).rowcount
            print(f"seeded {done:>10,} rows in {time.monotonic() - started:6.1f}s", flush=True)
        conn.execute("VACUUM ANALYZE")
        # What the dispatch worker does every minute: recount the overview's closed hours.
        started = time.monotonic()
        hours.roll_up(conn)
        print(f"rolled up 7 days of hours in {time.monotonic() - started:6.1f}s", flush=True)
        conn.execute("VACUUM ANALYZE call_hours, call_hour_durations")


def pages(url: str) -> dict[str, str]:
    """Return the pages and searches to time, named for the operator's question."""
    with psycopg.connect(url) as conn:
        call_sid, phone, day = conn.execute(
            "SELECT call_sid, phone_number, (created_at - interval '30 days')::date FROM calls "
            "ORDER BY id DESC LIMIT 1 OFFSET 1000"
        ).fetchone()
    return {
        "overview, last 24 h": "/ops/",
        "overview, last 7 days": "/ops/?window=7d",
        "calls, newest": "/ops/calls",
        "calls, fragment refresh": "/ops/calls?fragment=1",
        "calls, status failed": "/ops/calls?status=failed",
        "call page": f"/ops/calls/{call_sid}",
        "deliveries, rejected": "/ops/deliveries?outcome=rejected",
        "search: phone, last 4 digits": f"/ops/calls?phone={phone[-4:]}",
        "search: phone, whole number": f"/ops/calls?phone={phone[1:]}",
        "search: driver id": "/ops/calls?driver=4242",
        "search: driver name start": "/ops/calls?driver=dana%20424",
        "search: call_sid": f"/ops/calls?call_sid={call_sid}",
        "search: one day, a month ago": f"/ops/calls?from={day}&to={day}",
        "search: driver id, one day": f"/ops/calls?driver=4242&from={day}&to={day}",
        "search: outcome failure": "/ops/calls?outcome=failure",
        "search: outcome failure, a month ago": f"/ops/calls?outcome=failure&to={day}",
    }


def get(connection: http.client.HTTPConnection, path: str) -> float:
    """Return the seconds one GET took, body read; exit on anything but 200."""
    started = time.perf_counter()
    connection.request("GET", path, headers=AUTH)
    response = connection.getresponse()
    response.read()
    took = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"error: {path} answered {response.status}")
    return took


def peak_memory_mb(master: int) -> float:
    """Return the largest peak resident memory (VmHWM) among the gunicorn master's workers."""
    peaks = []
    for task in Path(f"/proc/{master}/task").iterdir():
        for child in (task / "children").read_text().split():
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def time_page(connection: http.client.HTTPConnection, name: str, path: str, repeat: int) -> float:
    """Print one page's median and slowest time over ``repeat`` requests; return the median."""
    get(connection, path)  # warm: the first request of a kind
    times = [get(connection, path) for _ in range(repeat)]
    median, slowest = statistics.median(times) * 1000, max(times) * 1000
    print(f"{name:<40} {median:>7.1f}ms {slowest:>7.1f}ms", flush=True)
    return median


def without_rollup(url: str) -> None:
    """Age the overview's rollup past its freshness, as if the worker had stopped."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE call_hours SET counted_at = counted_at - interval '1 day'")


def export(connection: http.client.HTTPConnection) -> tuple[int, float]:
    """Stream the CSV export of every call; return (rows, seconds)."""
    started = time.perf_counter()
    connection.request("GET", "/ops/calls.csv", headers=AUTH)
    response = connection.getresponse()
    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: response.read(1 << 16), b""))
    return lines - 1, time.perf_counter() - started


def main() -> None:
    """Seed, serve, time every page, export, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()
    with throwaway_database() as (url, _postmaster):
        seed(url, args.calls)
        settings = {"DATABASE_URL": url, "API_TOKENS": TOKEN, "WEB_CONCURRENCY": "1"}
        with running_app(settings) as (server, port):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            print(f"\n{'page':<40} {'median':>9} {'slowest':>9}   ({args.repeat} requests)")
            medians = {
                name: time_page(connection, name, path, args.repeat)
                for name, path in pages(url).items()
            }
            # The floor the rollup is measured against, in the same run: every hour read live.
            without_rollup(url)
            for window, path in (("24 h", "/ops/"), ("7 days", "/ops/?window=7d")):
                live = time_page(connection, f"overview, {window}, all live", path, args.repeat)
                rolled = medians[f"overview, last {window}"]
                print(f"{'  rollup / all live':<40} {rolled / live:>8.2f}", flush=True)
            before = peak_memory_mb(server.pid)
            rows, seconds = export(connection)
            after = peak_memory_mb(server.pid)
            print(
                f"\nCSV export: {rows:,} rows in {seconds:.1f}s = {rows / seconds:,.0f} rows/s; "
                f"worker peak memory {before:.1f} MB before, {after:.1f} MB after"
            )


if __name__ == "__main__":
    main()
