"""One error shape for everything that leaves the app.

``{"error": "<short code>", "message": "<human sentence>", "details": {...}}``
"""

import logging

from flask import Request, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a view raises on purpose: status, short code, sentence, details."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict | None = None, status=None, code=None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.status = status or self.status
        self.code = code or self.code


class JsonRequest(Request):
    """A request whose bad JSON is a clear 400 in our shape, not HTML."""

    def get_json(self, *args, **kwargs):
        """Parse the body as JSON; nesting too deep to parse is bad JSON too, not a 500."""
        try:
            return super().get_json(*args, **kwargs)
        except RecursionError:  # json raises this, not ValueError, for "[[[[…" very deep
            return self.on_json_loading_failed(ValueError("nested too deeply"))

    def on_json_loading_failed(self, e):
        """Raise a 400 that says the body is not valid JSON."""
        raise ApiError(
            "The request body is not valid JSON.",
            code="invalid_json",
            details={"reason": str(e) if e else "no JSON body"},
        )


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_response(status: int, code: str, message: str, details: dict | None = None):
    """Return the JSON error body and status."""
    return jsonify(error=code, message=message, details=details or {}), status


def _http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    if exc.code == 413:
        code = "payload_too_large"
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else {}
    body, status = error_response(exc.code or 500, code, exc.description or exc.name)
    return body, status, headers


def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.details)


def _internal_error(exc: InternalServerError):
    # Flask calls this after sending got_request_exception, which is what the
    # Sentry integration listens to, so the original error is already reported.
    original = getattr(exc, "original_exception", None)
    if original is not None:
        log.error("unhandled error", exc_info=original)
    return error_response(
        500, "internal_error", "Something went wrong on our side; it has been logged."
    )


def init_app(app) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.request_class = JsonRequest
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(HTTPException, _http_error)
