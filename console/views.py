"""Blueprint ``/ops``: a read-only console to watch calls and their webhooks as they happen.

Sign-in is HTTP Basic only: any user name, one of ``API_TOKENS`` as the password
(a script sends ``curl -u ops:<token>``); no other scheme is read. Pages refresh their
data in place every few seconds from the same URL with ``?fragment=1``.
"""

import logging
from datetime import UTC

import psycopg
from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from psycopg_pool import PoolTimeout

import auth
import transcription_helpers
from api.phone_numbers import mask_phone
from console import overview, queries, search
from db import get_conn
from dispatch import batches
from errors import ApiError
from models import calls, outcomes
from models import webhook_deliveries as deliveries
from ops import replay

log = logging.getLogger(__name__)
bp = Blueprint(
    "ops_console", __name__, url_prefix="/ops", template_folder="templates", static_folder="static"
)

OUTCOME_FILTERS = ("rejected", *deliveries.STATUS)

# No inline script or style anywhere, so a line of transcript that slips
# past escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages carry drivers' details: never keep them in a shared cache or the back-button cache.
    "Cache-Control": "no-store",
}


@bp.errorhandler(ApiError)
def error_page(exc: ApiError, headers=None):
    """Render a refused request as a page a person can read."""
    return render_template("ops/error.html", error=exc), exc.status, headers or {}


@bp.before_request
def require_token():
    """Answer 401 with a Basic challenge unless the request carries an API token."""
    if auth.accepted(auth.presented_token("basic"), current_app.config["API_TOKENS"]):
        return None
    message = "Sign in with any user name and an API token as the password."
    challenge = {"WWW-Authenticate": 'Basic realm="ops console", charset="UTF-8"'}
    return error_page(ApiError(message, status=401, code="unauthorized"), challenge)


@bp.after_request
def security_headers(response):
    """Add the console's CSP and no-cache headers to every response."""
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.errorhandler(psycopg.OperationalError)
@bp.errorhandler(PoolTimeout)
def database_unavailable(exc):
    """Say the database is unreachable; the live refresh shows it and keeps trying."""
    log.error("ops console: database unavailable: %s", str(exc).strip().splitlines()[:1])
    message = "The database cannot be reached."
    return error_page(ApiError(message, status=503, code="database_unavailable"))


@bp.app_template_filter("ops_time")
def ops_time(value) -> str:
    """Format a timestamp as UTC to the second, the way operators compare logs."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_test("replayable")
def replayable(delivery) -> bool:
    """Tell whether a replay could apply a delivery: refused for a cause ``ops replay`` may fix."""
    return delivery.outcome in deliveries.REPLAYABLE and replay.refusal(delivery) is None


# Operators see a driver's number the way the logs show it, never whole.
bp.add_app_template_filter(mask_phone, "masked_phone")
bp.add_app_template_global(overview.stacked_bars)


@bp.get("/")
def overview_page():
    """Chart how the last 24 hours (or 7 days) of calls and webhooks went."""
    query = search.Query(request.args)
    window = query.valid({"window": query.choice("window", overview.WINDOWS, "24h")})["window"]
    seen = overview.read(get_conn(), window)
    return render_template("ops/overview.html", seen=seen, labels=overview.LABELS)


@bp.get("/calls")
def calls_page():
    """Show the calls that match the search, newest first, with their outcome and answers."""
    filters = search.parse_filters(request.args)
    conn = get_conn()
    page = search.latest(conn, filters)
    return render_template(
        "ops/calls.html",
        page=page,
        filters=filters,
        form=search.form_values(request.args),
        statuses=search.STATUSES,
        verdicts=outcomes.VERDICTS,
        counts=queries.page_counts(conn, page.rows),
    )


@bp.get("/calls.csv")
def calls_csv():
    """Stream every call the search matches as CSV, newest first, in flat memory."""
    rows = search.every(get_conn(), search.parse_filters(request.args))
    disposition = 'attachment; filename="calls.csv"'
    headers = {"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": disposition}
    return stream_with_context(search.csv_lines(rows)), headers


@bp.get("/calls/<call_sid>")
def call_page(call_sid: str):
    """Show one call: lifecycle, outcome and answers, transcript, webhook deliveries."""
    conn = get_conn()
    known = search.CALL_SID_PATTERN.fullmatch(call_sid)
    call = calls.by_call_sid(conn, call_sid) if known else None
    if call is None:
        details = {"call_sid": call_sid[:128]}
        raise ApiError("No call has this call_sid.", status=404, code="not_found", details=details)
    return render_template(
        "ops/call.html",
        call=call,
        outcome=outcomes.of_call(conn, call.id),
        lines=transcription_helpers.transcript(conn, call.conversation_id),
        deliveries=queries.of_call(conn, call),
    )


@bp.get("/batches")
def batches_page():
    """Show the newest batches and how far each has got."""
    return render_template("ops/batches.html", batches=batches.counted(get_conn()))


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str):
    """Show one batch: its counts per state and every entry with its calls."""
    batch = batches.show(get_conn(), batch_id[:64])
    if batch is None:
        raise ApiError("No batch has this id.", status=404, code="not_found")
    return render_template("ops/batch.html", batch=batch)


def cross_site(req) -> bool:
    """Tell whether a browser sent this request from another site's page (a forged POST).

    Browsers send HTTP Basic credentials with any site's form POST, so a write
    must prove it came from our own pages: Sec-Fetch-Site, else Origin, as Go's
    net/http CrossOriginProtection judges. Neither header: not a browser, nothing to forge.
    """
    fetch_site = req.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = req.headers.get("Origin")
    return origin is not None and origin != req.host_url.rstrip("/")


@bp.post("/deliveries/<int:delivery_id>/replay")
def replay_delivery(delivery_id: int):
    """Replay one refused delivery as ``python -m ops replay --delivery N`` does; show its call."""
    if cross_site(request):
        raise ApiError(
            "A replay must come from the console's own page.", status=403, code="forbidden"
        )
    price = current_app.config.get("ELEVENLABS_USD_PER_CREDIT")
    try:
        line, _ = replay.replay_one(get_conn(), delivery_id, usd_per_credit=price)
    except replay.NoSuchDelivery:
        raise ApiError("No delivery has this id.", status=404, code="not_found") from None
    log.info("ops console: %s", line)
    call_sid = request.form.get("call_sid", "")  # the call page it was pressed on, if any
    known = search.CALL_SID_PATTERN.fullmatch(call_sid)
    back = url_for(".call_page", call_sid=call_sid) if known else url_for(".deliveries_page")
    return redirect(f"{back}#delivery-{delivery_id}", 303)


@bp.get("/deliveries")
def deliveries_page():
    """Show the latest webhook deliveries, including those that named no known call."""
    query = search.Query(request.args)
    filters = query.valid({"outcome": query.choice("outcome", OUTCOME_FILTERS), **query.page()})
    page = queries.latest(get_conn(), **filters)
    return render_template(
        "ops/deliveries.html", page=page, filters=filters, outcomes=OUTCOME_FILTERS
    )
