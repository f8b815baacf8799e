"""One error shape for everything that leaves the app: ``{"error", "message", "details"}``."""

import json
import logging

from flask import Request, g, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

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
    """A request whose body is read whole or refused, and whose bad JSON is a clear 400."""

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        """Return the body; 413 when it is over the limit, whatever its framing."""
        data = super().get_data(cache=cache, parse_form_data=parse_form_data)
        limit = self.max_content_length
        # Without Content-Length (a chunked body) werkzeug stops reading at the limit
        # and says nothing: one byte past it means the body was cut, never to be parsed.
        cut = self.content_length is None and limit is not None and len(data) >= limit
        if cut and self.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
        return data.decode(errors="replace") if as_text else data

    def get_json(self, force=False, silent=False, cache=True):
        """Parse the body as JSON: one value per key, numbers in range, nesting parseable."""
        if not (force or self.is_json):
            return self.on_json_loading_failed(None)
        try:
            return json.loads(
                self.get_data(cache=cache),
                object_pairs_hook=_one_value_per_key,
                parse_int=_integer,
            )
        except RecursionError:  # json raises this, not ValueError, for "[[[[…" very deep
            return None if silent else self.on_json_loading_failed(ValueError("nested too deeply"))
        except ValueError as exc:
            return None if silent else self.on_json_loading_failed(exc)

    def on_json_loading_failed(self, e):
        """Raise a 400 that says what is wrong with the body, or with its Content-Type."""
        if e is None:
            raise ApiError(
                "The body must be JSON sent with the header Content-Type: application/json "
                f"(got {self.content_type or 'no Content-Type'}).",
                status=415,
                code="unsupported_media_type",
            )
        raise ApiError(
            "The request body is not valid JSON.",
            code="invalid_json",
            details={"reason": str(e)},
        )


MAX_INTEGER_DIGITS = 40  # any field's range is far below this; Python's own limit is 4,300


def _one_value_per_key(pairs: list) -> dict:
    """Refuse a key named twice in one object: which value was meant is not ours to guess."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key[:64]!r} appears twice in one object")
        seen[key] = value
    return seen


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is out of every field's range")
    return int(text)


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_response(status: int, code: str, message: str, details: dict | None = None):
    """Return the JSON error body and status."""
    return jsonify(error=code, message=message, details=details or {}), status


def _http_error(exc: HTTPException):
    code = "payload_too_large" if exc.code == 413 else exc.name.lower().replace(" ", "_")
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
        500,
        "internal_error",
        "Something went wrong on our side; it has been logged.",
        g.get("error_details"),  # what the view had done already, e.g. a delivery's record
    )


def init_app(app) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.request_class = JsonRequest
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(HTTPException, _http_error)
