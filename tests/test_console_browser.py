"""The ops console in a real browser: headless Chromium (Debian's package) driven by Playwright.

The real app serves on a local port against the test database; the call is
created through the API (ElevenLabs stood in for by a local HTTP server) and its
transcript arrives as real signed webhooks, while the page watches.
"""

import re
import shutil
from pathlib import Path

import pytest
import requests
from console_support import ANSWERS, answer_late, complete, make_searchable_call
from credentials import API_TOKEN
from webhook_signing import TRANSCRIPTION, body_of, signature_header

from models import calls

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
MISSING_CHROMIUM = f"{CHROMIUM} is missing: `make system-packages` installs Debian's chromium"
# The page refreshes every 5 s; allow a few refreshes.
REFRESH_WAIT_MS = 20_000
XSS_LINES = ["<script>window.__xss=1</script>", "<img src=x onerror=window.__xss=1>"]


@pytest.fixture
def app_config(app_config, elevenlabs):
    """Point the app at a local ElevenLabs that places every call, each with its own ids."""
    elevenlabs.answer(fresh_ids=True)
    return {**app_config, "ELEVENLABS_BASE_URL": elevenlabs.base_url}


@pytest.fixture
def browser():
    """Start Debian's Chromium headless; close it after the test."""
    if not shutil.which(CHROMIUM):
        pytest.fail(MISSING_CHROMIUM)
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


def test_the_missing_chromium_message_names_a_make_target_that_exists():
    [target] = re.findall(r"`make ([\w-]+)`", MISSING_CHROMIUM)
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no `{target}` target"


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


@pytest.fixture
def signed_in(browser):
    """Return a page signed in to the console, 1,400 px wide; its context closed after."""
    context = browser.new_context(
        http_credentials={"username": "ops", "password": API_TOKEN},
        viewport={"width": 1400, "height": 900},
    )
    page = context.new_page()
    page.csp_errors = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_errors.append(m))
    yield page
    context.close()


def seed_a_day_of_calls(conn):
    """Create a few calls of every outcome, the way the webhooks leave them."""
    for n in range(6):
        answers = {**ANSWERS, "location": "I-80 exit 4" + str(n)} if n % 2 else ANSWERS
        complete(
            conn,
            make_searchable_call(conn, driver_id=40 + n),
            "success",
            answers,
            seconds=60 + 9 * n,
        )
    for reason in ("no-answer", "busy", "ElevenLabs said 429 too_many_concurrent_requests"):
        calls.mark_failed(
            conn, make_searchable_call(conn, "+14155550999", driver_id=7).call_sid, reason=reason
        )
    make_searchable_call(conn, driver_id=8)


def test_list_fits_1400_px_and_driver_42s_answers_are_two_clicks_away(
    signed_in, live_server, conn, tmp_path
):
    seed_a_day_of_calls(conn)
    page = signed_in
    page.goto(live_server + "/ops/calls")
    page.locator("tr.call").first.wait_for()
    page.screenshot(path=tmp_path / "calls-1400.png", full_page=True)
    # Nothing pushed off screen: the page is no wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    for header in ("duration", "outcome", "answers", "rejected"):
        box = page.get_by_role("columnheader", name=header, exact=True).bounding_box()
        assert box["x"] + box["width"] <= 1400, header

    page.get_by_label("Driver (id or name)").fill("42")  # first click: search
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/ops/calls?*driver=42*")
    row = page.locator("tr.call")
    assert row.count() == 1
    assert "10:40" in row.inner_text() and "loaded" in row.inner_text()
    row.locator("a.sid").click()  # second click: the call
    page.locator(".outcome").wait_for()
    outcome = page.locator(".outcome").inner_text()
    for shown in ("success", "On I-80.", "eta", "10:40", "212 credits"):
        assert shown in outcome
    assert (
        page.get_by_role("link", name="Calls", exact=True).get_attribute("aria-current") == "page"
    )
    page.screenshot(path=tmp_path / "call-1400.png", full_page=True)
    assert page.csp_errors == []


def test_overview_charts_the_day_drawn_by_the_server(signed_in, live_server, conn, tmp_path):
    seed_a_day_of_calls(conn)
    page = signed_in
    page.goto(live_server + "/ops/")
    chart = page.get_by_role("img", name="calls per hour by outcome")
    chart.wait_for()
    assert page.locator("#total-calls").inner_text() == "10"
    kinds = page.evaluate(
        "[...document.querySelectorAll('svg rect.bar')].map(r => r.classList[1]).sort()"
    )
    assert kinds == ["busy", "completed", "failed", "in-progress", "no-answer"]
    # Coloured by the stylesheet, not by inline style (the page allows none).
    fill = page.evaluate("getComputedStyle(document.querySelector('rect.completed')).fill")
    assert fill == "rgb(45, 164, 78)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert page.get_by_role("link", name="Overview").get_attribute("aria-current") == "page"
    page.get_by_role("link", name="last 7 days").click()
    page.wait_for_url("**/ops/?window=7d")
    assert page.locator("#total-calls").inner_text() == "10"
    page.screenshot(path=tmp_path / "overview-1400.png", full_page=True)
    assert page.csp_errors == []


def refused_early_line(api, live_server, conn):
    """Return a call and the delivery of a line refused because it came before the call's id."""
    call = calls.create(conn, driver_id=42, phone_number="+14155550123", driver_name="Dana")
    refused = send_line(api, live_server, call.call_sid, "Passing exit 42 now.", 1)
    assert refused.status_code == 400, refused.text
    # ElevenLabs' answer, arriving late, gives the call its conversation_id.
    answer_late(conn, call)
    return call, refused.json()["details"]["delivery_id"]


def test_operator_replays_a_refused_delivery_from_the_call_page(signed_in, live_server, api, conn):
    call, delivery_id = refused_early_line(api, live_server, conn)
    page = signed_in
    page.goto(f"{live_server}/ops/calls/{call.call_sid}")
    delivery = page.locator(f"#delivery-{delivery_id}")
    assert "bad" in delivery.get_attribute("class")
    assert page.get_by_text("Passing exit 42 now.", exact=True).count() == 0

    delivery.get_by_role("button", name="replay").click()
    page.wait_for_url(f"**/ops/calls/{call.call_sid}#delivery-{delivery_id}")
    page.get_by_text("Passing exit 42 now.", exact=True).wait_for()
    assert "1\u00d7 → accepted" in delivery.inner_text()
    assert delivery.get_by_role("button", name="replay").count() == 0  # settled: no button
    assert page.csp_errors == []


def test_replay_button_on_another_sites_page_is_refused(signed_in, live_server, api, conn):
    call, delivery_id = refused_early_line(api, live_server, conn)
    page = signed_in
    # Another site's page carrying a copy of the replay form, posted with the operator's sign-in.
    forged = (
        f'<form method="post" action="{live_server}/ops/deliveries/{delivery_id}/replay">'
        f'<input type="hidden" name="call_sid" value="{call.call_sid}">'
        "<button>replay</button></form>"
    )
    page.route(
        "http://elsewhere.test/", lambda route: route.fulfill(body=forged, content_type="text/html")
    )
    page.goto("http://elsewhere.test/")
    with page.expect_response(f"**/deliveries/{delivery_id}/replay") as answered:
        page.get_by_role("button", name="replay").click()
    assert answered.value.status == 403
    assert page.get_by_text("A replay must come from the console's own page.").is_visible()
    [(count,)] = conn.execute(
        "SELECT replay_count FROM webhook_deliveries WHERE id = %s", (delivery_id,)
    ).fetchall()
    assert count == 0
