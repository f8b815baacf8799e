"""Prometheus metrics: what the service counts, and ``GET /metrics`` (bearer token) to read it.

Under gunicorn each worker is a process: prometheus-client's multiprocess mode
keeps each worker's values in ``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py
before any worker imports this) and ``/metrics`` sums them. Other modules count
through the ``record_…`` functions, where the thing happens.
"""

import os
import time

import prometheus_client
from flask import Blueprint, Response, current_app, g, request
from prometheus_client import Counter, Gauge, Histogram, multiprocess

import auth
from errors import error_response

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route and status.",
    ["method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries_total",
    "Webhook deliveries received, by endpoint and outcome (accepted, unknown_call, ...).",
    ["endpoint", "outcome"],
)
WEBHOOK_UNRECORDED = Counter(
    "webhook_deliveries_unrecorded_total",
    "Webhook deliveries not signed by ElevenLabs and over the budget for recording them.",
    ["endpoint"],
)
ELEVENLABS_REQUESTS = Counter(
    "elevenlabs_requests_total",
    "Outbound-call requests to ElevenLabs, by outcome (ok, timeout, http_429, ...).",
    ["outcome"],
)
ELEVENLABS_LATENCY = Histogram(
    "elevenlabs_request_duration_seconds",
    "Time ElevenLabs took to answer an outbound-call request, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30),
)
CONVERSATION_ID_CLASHES = Counter(
    "elevenlabs_conversation_id_clashes_total",
    "Outbound calls ElevenLabs answered with a conversation_id another call already has.",
)
CALLS_CREATED = Counter(
    "calls_created_total",
    "Calls created through the API, by the status the request left them in.",
    ["status"],
)
CALLS_ENDED = Counter(
    "calls_ended_total",
    "Calls ended by what ElevenLabs told us (webhook or reconciliation), by final status "
    "and ElevenLabs' verdict (success, failure, unknown, none).",
    ["status", "verdict"],
)
RECONCILE_RUNS = Counter("reconcile_runs_total", "Reconciliation runs (dry runs are not counted).")
RECONCILED_CALLS = Counter(
    "reconcile_calls_total",
    "Open calls reconciliation looked at, by what became of them (completed, failed, "
    "still_under_way, left_for_the_next_run, ...).",
    ["result"],
)

# Summed over the live workers: each reports its own pool after every request.
DB_POOL = Gauge(
    "db_pool_connections",
    "Database pool connections per state: size (open), available (idle), max.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "db_pool_requests_waiting",
    "Requests waiting for a database connection right now.",
    multiprocess_mode="livesum",
)

# Read from the database when /metrics is scraped (by a hook the dispatch part
# registers): every worker reads the same figures, so the most recent one stands.
CALLS_IN_FLIGHT = Gauge(
    "calls_in_flight",
    "Calls in flight now: initiating or initiated, younger than CALL_MAX_MINUTES.",
    multiprocess_mode="mostrecent",
)
CALLS_IN_FLIGHT_CAP = Gauge(
    "calls_in_flight_cap",
    "MAX_CONCURRENT_CALLS: the calls in flight the dispatch workers allow at once.",
    multiprocess_mode="mostrecent",
)
BATCH_ENTRIES = Gauge(
    "batch_entries",
    "Entries of batches still pending or running, per entry state.",
    ["state"],
    multiprocess_mode="mostrecent",
)
BATCH_BACKOFFS = Counter(
    "batch_backoffs_total",
    "Batch entries put back after ElevenLabs answered 429 (not an attempt; counted by the worker).",
)

bp = Blueprint("metrics", __name__)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record_webhook_delivery(endpoint: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(endpoint, outcome).inc()


def record_unrecorded_delivery(endpoint: str) -> None:
    WEBHOOK_UNRECORDED.labels(endpoint).inc()


def record_elevenlabs_call(outcome: str, seconds: float) -> None:
    ELEVENLABS_REQUESTS.labels(outcome).inc()
    ELEVENLABS_LATENCY.labels(outcome).observe(seconds)


def record_conversation_id_clash() -> None:
    CONVERSATION_ID_CLASHES.inc()


def record_call_outcome(status: str) -> None:
    CALLS_CREATED.labels(status).inc()


def record_call_ended(status: str, verdict: str | None) -> None:
    CALLS_ENDED.labels(status, verdict or "none").inc()


def record_ending(outcome) -> None:
    """Count the call a delivery's ``Outcome`` ended, if any: only once its transaction
    committed, since a rolled back delivery may come again."""
    if outcome.ended:
        record_call_ended(*outcome.ended)


def record_batch_backoff() -> None:
    BATCH_BACKOFFS.inc()


def record_dispatch_state(in_flight: int, cap: int, entries: dict[str, int]) -> None:
    CALLS_IN_FLIGHT.set(in_flight)
    CALLS_IN_FLIGHT_CAP.set(cap)
    for state, count in entries.items():
        BATCH_ENTRIES.labels(state).set(count)


def record_reconcile_run(counts: dict) -> None:
    RECONCILE_RUNS.inc()
    for result, count in counts.items():
        if count:
            RECONCILED_CALLS.labels(result.replace(" ", "_")).inc(count)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _finished(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        # The route's pattern, not the path: one series per route, not per call_sid.
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # The method is whatever the client wrote: a made-up one would be a new series.
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
    pool = current_app.extensions.get("db_pool")
    if pool is not None:
        stats = pool.get_stats()
        for state in ("size", "available", "max"):
            DB_POOL.labels(state).set(stats.get(f"pool_{state}", 0))
        DB_POOL_WAITING.set(stats.get("requests_waiting", 0))
    return response


@bp.get("/metrics")
def scrape():
    """Answer the metrics in Prometheus' text format, to a holder of a metrics token."""
    tokens = current_app.config.get("METRICS_TOKENS") or current_app.config["API_TOKENS"]
    if not auth.accepted(auth.presented_token("bearer"), tokens):
        body, status = error_response(
            401, "unauthorized", "Metrics need Authorization: Bearer <METRICS_TOKEN>."
        )
        return body, status, {"WWW-Authenticate": 'Bearer realm="metrics"'}
    for hook in current_app.extensions.get("scrape_hooks", []):
        hook()  # figures read from the database at scrape time
    registry = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # sums every worker's files
    latest = prometheus_client.generate_latest(registry)
    return Response(latest, content_type=prometheus_client.CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    """Time and count every request, and serve ``/metrics``."""
    app.before_request(_started)
    app.after_request(_finished)
    app.register_blueprint(bp)
