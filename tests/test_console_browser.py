"""The ops console in a real browser: headless Chromium (Debian's package) driven by Playwright.

The real app serves on a local port against the test database; the call is
created through the API (ElevenLabs stood in for by a local HTTP server) and its
transcript arrives as real signed webhooks, while the page watches.
"""

import shutil
import threading

import pytest
import requests
from conftest import API_TOKEN
from webhook_signing import TRANSCRIPTION, body_of, signature_header
from werkzeug.serving import make_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches for the network beyond the local server.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The page refreshes every 5 s; allow a few refreshes.
REFRESH_WAIT_MS = 20_000
XSS_LINES = ["<script>window.__xss=1</script>", "<img src=x onerror=window.__xss=1>"]


@pytest.fixture
def app_config(app_config, elevenlabs):
    """Point the app at a local ElevenLabs that places every call, each with its own ids."""
    elevenlabs.answer(fresh_ids=True)
    return {**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url}


@pytest.fixture
def live_server(app):
    """Serve the app on a free local port for the test's duration; return its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def browser():
    """Start Debian's Chromium headless; close it after the test."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def api():
    """Return an HTTP session for the API, closed after the test."""
    with requests.Session() as session:
        yield session


def send_line(api, base, call_sid, message, second):
    """Deliver one transcript line as a signed ElevenLabs webhook; return the response."""
    body = body_of(
        {
            "call_sid": call_sid,
            "speaker": "agent" if second % 2 else "user",
            "message": message,
            "timestamp": f"2026-11-25T10:20:{second:02d}Z",
        }
    )
    headers = {"ElevenLabs-Signature": signature_header(body), "Content-Type": "application/json"}
    return api.post(base + TRANSCRIPTION, data=body, headers=headers, timeout=10)


def cells(page, call_sid) -> list[str]:
    """Return the lines / webhooks ok / rejected counts of a call's row."""
    return page.locator(f'tr[data-call-sid="{call_sid}"] td.num').all_inner_texts()


def test_console_without_credentials_gets_401(browser, live_server):
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context()
    page = context.new_page()
    url = live_server + "/ops/calls"
    try:
        # With no credentials to offer, Chromium gives up on the challenge.
        with (
            page.expect_response(url) as answered,
            pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"),
        ):
            page.goto(url)
        assert answered.value.status == 401
        assert answered.value.headers["www-authenticate"].startswith('Basic realm="ops console"')
    finally:
        context.close()


def test_operator_watches_a_call_and_its_webhooks_arrive(
    browser, live_server, api, elevenlabs, tmp_path
):
    context = browser.new_context(http_credentials={"username": "ops", "password": API_TOKEN})
    page = context.new_page()
    csp_errors = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp_errors.append(m.text))
    try:
        page.goto(live_server + "/ops/calls")
        page.get_by_text("No calls match.").wait_for()
        page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

        created = api.post(
            live_server + "/driver_data/call-elevenlabs",
            json={"driver_id": 42, "phone_number": "+14155550123", "driver_name": "Dana"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        call_sid = created.json()["call_sid"]
        row = page.locator(f'tr[data-call-sid="{call_sid}"]')
        row.wait_for(timeout=REFRESH_WAIT_MS)
        assert "initiated" in row.inner_text()

        for second, message in enumerate(["Hi Dana, dispatch here.", *XSS_LINES], start=1):
            assert send_line(api, live_server, call_sid, message, second).status_code == 200
        rejected = send_line(api, live_server, call_sid, "", 9)  # an empty message is refused
        assert rejected.status_code == 400
        page.wait_for_function(
            "sid => [...document.querySelectorAll(`tr[data-call-sid='${sid}'] td.num`)]"
            ".map(td => td.innerText).join(',') === '3,3,1'",
            arg=call_sid,
            timeout=REFRESH_WAIT_MS,
        )
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=tmp_path / "calls.png", full_page=True)

        row.get_by_role("link", name=call_sid).click()
        page.wait_for_url(f"**/ops/calls/{call_sid}")
        for message in XSS_LINES:
            assert page.get_by_text(message, exact=True).is_visible()
        assert page.locator(".deliveries .delivery.bad").count() == 1
        assert page.locator(".deliveries .delivery.ok").count() == 3

        # A line said while the operator reads the call appears without a reload.
        assert send_line(api, live_server, call_sid, "On my way.", 10).status_code == 200
        page.get_by_text("On my way.", exact=True).wait_for(timeout=REFRESH_WAIT_MS)

        page.screenshot(path=tmp_path / "call.png", full_page=True)
        assert (tmp_path / "call.png").stat().st_size > 0
        assert page.evaluate("typeof window.__xss") == "undefined"

        # The refused delivery is also listed among all rejected ones.
        page.get_by_role("link", name="rejected", exact=True).click()
        page.wait_for_url("**/ops/deliveries?outcome=rejected")
        assert page.locator(".delivery.bad .outcome").all_inner_texts() == ["rejected_malformed"]
        assert csp_errors == []
    finally:
        context.close()
