"""Sentry for real: an unhandled error reaches a local HTTP server standing in for Sentry."""

import gzip
import json
import logging
import zlib

import pytest
import sentry_sdk
from credentials import API_TOKEN
from werkzeug import Response

from app import create_app

PHONE = "+14155550123"
DRIVER = "Dana Whitlock"
RELEASE = "call-sid-service@test-1"
# Built here, away from the request: an event's source context shows lines of code.
ORDER = {"driver_id": 42, "phone_number": PHONE, "driver_name": DRIVER}


def envelopes(received: list[tuple[dict, bytes]]) -> list[list[dict]]:
    """Return each envelope the server received as its list of JSON lines (headers, items)."""
    decoded = []
    for headers, body in received:
        encoding = headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # only when sentry-sdk found brotli installed

            body = brotli.decompress(body)
        decoded.append([json.loads(line) for line in body.splitlines() if line.strip()])
    return decoded


def events_in(received: list[tuple[dict, bytes]]) -> list[dict]:
    """Return the error events among the items of every envelope received."""
    return [
        item
        for envelope in envelopes(received)
        for header, item in zip(envelope[1::2], envelope[2::2], strict=True)
        if header.get("type") == "event"
    ]


@pytest.fixture
def sentry_server(httpserver):
    """Return what a local Sentry receives, and restore the global SDK state after the test."""
    received: list[tuple[dict, bytes]] = []

    def store(request):
        received.append((dict(request.headers), request.get_data()))
        return Response("{}", status=200, content_type="application/json")

    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_handler(store)
    yield f"http://publickey@127.0.0.1:{httpserver.port}/1", received
    # sentry_sdk.init is process-wide: close its client so later tests report nowhere.
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_an_unhandled_error_reaches_sentry_tagged_and_without_personal_data(
    app_config, sentry_server
):
    dsn, received = sentry_server
    app = create_app(
        {
            **app_config,
            "SENTRY_DSN": dsn,
            "APP_ENV": "development",  # not Sentry's default ("production"), so the tag is ours
            "RELEASE": RELEASE,
            "PROPAGATE_EXCEPTIONS": False,
        }
    )

    @app.post("/boom")
    def boom():
        phone_number = PHONE  # a local a frame dump would show
        raise RuntimeError(f"ElevenLabs refused the call to {phone_number}")

    try:
        response = app.test_client().post(
            "/boom",
            json=ORDER,
            headers={"Authorization": f"Bearer {API_TOKEN}", "Cookie": "session=s3cr3t-cookie"},
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
        )
        assert sentry_sdk.get_client().is_active()
        sentry_sdk.flush(timeout=10)
    finally:
        app.extensions["db_pool"].close()

    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    events = events_in(received)
    assert events, f"no event among {len(received)} envelopes"
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["environment"] == "development"
    assert event["release"] == RELEASE
    assert event["request"]["method"] == "POST"
    assert "data" not in event["request"]  # bodies carry names, numbers, transcripts
    assert "ip_address" not in event.get("user", {})
    # Every item of every envelope, decompressed: sessions and client reports too.
    raw = json.dumps(envelopes(received), ensure_ascii=False).encode()
    for personal in (PHONE, PHONE[1:], DRIVER, API_TOKEN, "s3cr3t-cookie", "203.0.113.9"):
        assert personal.encode() not in raw, personal
    assert "+1415•••0123" in event["exception"]["values"][-1]["value"]


def test_an_error_the_service_logs_and_handles_reaches_sentry_with_its_exception(
    app_config, sentry_server
):
    dsn, received = sentry_server
    app = create_app({**app_config, "SENTRY_DSN": dsn})

    @app.post("/handled")
    def handled():
        try:
            raise RuntimeError("the delivery could not be recorded")
        except RuntimeError:
            # As the webhook endpoints log what they answer for anyway.
            logging.getLogger("webhooks_elevenlabs").exception("delivery not recorded")
        return {"status": "accepted"}

    try:
        response = app.test_client().post("/handled", json={})
        sentry_sdk.flush(timeout=10)
    finally:
        app.extensions["db_pool"].close()

    assert response.status_code == 200
    events = events_in(received)
    assert events, f"no event among {len(received)} envelopes"
    assert events[0]["exception"]["values"][-1]["type"] == "RuntimeError"
