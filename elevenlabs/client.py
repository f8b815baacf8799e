"""The ElevenLabs HTTP client: place an outbound call over Twilio, never twice.

``outbound_call`` sends exactly one request and turns every way it can go wrong
into one ``ElevenLabsError``. Nothing is retried, not even a connection that
failed half-way: a repeated request can ring a driver's phone twice. Only a
failure known to come before the request left (no connection, a refused one, a
certificate refused, a bad URL) says the call was not placed; every other one
says it may have been.

The whole exchange has a deadline (connect + read timeout): requests' read
timeout is per socket read, so an answer dripping a byte a second would
otherwise hold the request for as long as it drips.
"""

import json
import ssl
from dataclasses import dataclass

import requests
from requests.exceptions import (
    InvalidHeader,
    InvalidSchema,
    InvalidURL,
    MissingSchema,
    URLRequired,
)
from urllib3.exceptions import NewConnectionError

from elevenlabs.deadline import Deadline, NoRetryAdapter
from errors import first_line

OUTBOUND_CALL_PATH = "/v1/convai/twilio/outbound-call"
# Enough of a body to recognise it in a failure reason, not enough to flood a column.
EXCERPT_CHARS = 200
_NONE_GIVEN = "no message given"
MAY_BE_PLACED = (
    "the call may still have been placed (its post-call webhook would complete this call)"
)


@dataclass(frozen=True)
class OutboundCall:
    """A call ElevenLabs accepted: its conversation_id and Twilio's callSid (each may be null)."""

    conversation_id: str | None
    twilio_call_sid: str | None
    message: str


class ElevenLabsError(Exception):
    """ElevenLabs did not confirm the call; ``reason`` says why, ``kind`` names the case.

    ``may_have_dialled``: the request may have reached ElevenLabs (a timeout, a
    broken answer, a 5xx), so the phone may ring though the call is recorded failed.
    """

    def __init__(self, kind: str, reason: str, *, may_have_dialled: bool = False):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.may_have_dialled = may_have_dialled


class ElevenLabsClient:
    """One ``requests.Session`` to ElevenLabs: connect and read timeouts, and a total deadline."""

    def __init__(self, base_url: str, api_key: str, *, connect_timeout: float, read_timeout: float):
        self.url = base_url.rstrip("/") + OUTBOUND_CALL_PATH
        self.timeout = (connect_timeout, read_timeout)
        # The read timeout is per socket read: an answer dripping a byte a second needs a deadline.
        self.deadline = connect_timeout + read_timeout
        self.session = requests.Session()
        adapter = NoRetryAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.headers = {"xi-api-key": api_key, "Accept": "application/json"}
        # Proxy and CA settings come from the environment once, here, not on every call
        # (requests would rescan os.environ per request: half a millisecond each time).
        settings = self.session.merge_environment_settings(self.url, {}, None, None, None)
        self.session.proxies, self.session.verify = settings["proxies"], settings["verify"]
        self.session.trust_env = False

    @classmethod
    def from_config(cls, config) -> "ElevenLabsClient":
        return cls(
            config["ELEVENLABS_BASE_URL"],
            config["ELEVENLABS_API_KEY"],
            connect_timeout=config["ELEVENLABS_CONNECT_TIMEOUT"],
            read_timeout=config["ELEVENLABS_READ_TIMEOUT"],
        )

    def outbound_call(
        self, *, agent_id: str, agent_phone_number_id: str, to_number: str, dynamic_variables: dict
    ) -> OutboundCall:
        """Ask ElevenLabs to dial ``to_number``; return its answer or raise ElevenLabsError."""
        body = {
            "agent_id": agent_id,
            "agent_phone_number_id": agent_phone_number_id,
            "to_number": to_number,
            "conversation_initiation_client_data": {"dynamic_variables": dynamic_variables},
        }
        deadline = Deadline(self.deadline)
        try:
            # Prepared here and sent as is: Session.request would also merge cookie jars
            # and settings this client never uses (about 0.15 ms of CPU per call).
            request = requests.Request("POST", self.url, self.headers, json=body).prepare()
            with deadline:
                # A redirect would be followed by a second request: refuse it instead.
                response = self.session.send(request, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            if deadline.expired:
                raise ElevenLabsError(
                    "deadline_exceeded",
                    f"ElevenLabs did not answer in full within {self.deadline:g}s; {MAY_BE_PLACED}",
                    may_have_dialled=True,
                ) from exc
            raise transport_error(exc, self.timeout) from exc
        return parse_answer(response)


def transport_error(exc: requests.RequestException, timeout: tuple) -> ElevenLabsError:
    """Translate a failure to exchange bytes with ElevenLabs into an ElevenLabsError."""
    connect_timeout, read_timeout = timeout
    excerpt = first_line(exc)[:EXCERPT_CHARS]
    if isinstance(exc, requests.ReadTimeout):
        return ElevenLabsError(
            "read_timeout",
            f"ElevenLabs did not answer within {read_timeout:g}s; {MAY_BE_PLACED}",
            may_have_dialled=True,
        )
    if isinstance(exc, requests.ConnectTimeout):
        kind, what = (
            "connect_timeout",
            f"could not connect to ElevenLabs within {connect_timeout:g}s",
        )
    elif _caused_by(exc, ConnectionRefusedError):
        kind, what = "connection_refused", "ElevenLabs refused the connection"
    elif _caused_by(exc, ssl.SSLCertVerificationError):  # refused during the handshake
        kind, what = "tls_error", f"TLS with ElevenLabs failed: {excerpt}"
    # NameResolutionError (DNS) is a NewConnectionError too: nothing was sent either way.
    elif isinstance(exc, requests.ConnectionError) and _caused_by(exc, NewConnectionError):
        kind, what = "connection_failed", f"could not connect to ElevenLabs ({excerpt})"
    elif isinstance(exc, InvalidURL | MissingSchema | InvalidSchema | InvalidHeader | URLRequired):
        kind, what = "request_error", f"request to ElevenLabs not sent: {excerpt}"
    else:
        # After the request bytes were written: a connection that broke, an answer
        # cut short, a body that claims gzip and is not.
        return ElevenLabsError(
            "connection_lost",
            "the exchange with ElevenLabs broke before its answer was read "
            f"({type(exc).__name__}); the call may still have been placed",
            may_have_dialled=True,
        )
    return ElevenLabsError(kind, f"{what}; the call was not placed")


def parse_answer(response: requests.Response) -> OutboundCall:
    """Return the accepted call from a 2xx answer, or raise the error the answer describes."""
    status = response.status_code
    try:
        answer = response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply to parse
        answer, problem = None, "a body that is not JSON"
    else:
        problem = _shape_problem(answer)
    if not 200 <= status < 300:
        raise status_error(response, answer)
    if problem:
        raise ElevenLabsError(
            "bad_response",
            f"ElevenLabs answered {status} with {problem}: {_excerpt(response)}; "
            "the call may have been placed",
            may_have_dialled=True,
        )
    message = answer.get("message") or ""
    if not answer["success"]:
        raise ElevenLabsError(
            "unsuccessful", f"ElevenLabs did not place the call: {message or _NONE_GIVEN}"
        )
    # An empty id is no id: stored, it would collide with the next empty one.
    return OutboundCall(
        answer.get("conversation_id") or None, answer.get("callSid") or None, message
    )


def _shape_problem(answer) -> str | None:
    if not isinstance(answer, dict):
        return "unexpected JSON (not an object)"
    if not isinstance(answer.get("success"), bool):
        return "unexpected JSON (no boolean 'success')"
    for name in ("message", "conversation_id", "callSid"):
        if not isinstance(answer.get(name), str | None):
            return f"unexpected JSON ('{name}' is not a string)"
    return None


def status_error(response: requests.Response, body) -> ElevenLabsError:
    """Return the ElevenLabsError for a non-2xx answer (its JSON, or None), in ElevenLabs' words."""
    status = response.status_code
    detail = body.get("detail") if isinstance(body, dict) else None
    # 401 and 429 say which key or limit problem in detail.status, and why in detail.message.
    fields = detail if isinstance(detail, dict) else {"message": detail}
    code = fields.get("status") if isinstance(fields.get("status"), str) else None
    message = fields.get("message")
    if isinstance(message, str) and message:
        text = message[:EXCERPT_CHARS]
    else:
        text = json.dumps(detail)[:EXCERPT_CHARS] if detail else _excerpt(response)
    if status == 401:
        kind = "invalid_api_key" if code in (None, "invalid_api_key") else "unauthorized"
        reason = f"ElevenLabs refused our API key ({code or 'HTTP 401'}): {message or _NONE_GIVEN}"
    elif status == 429:
        kind = "rate_limited"
        reason = f"ElevenLabs is over capacity ({code or 'HTTP 429'}): {message or _NONE_GIVEN}"
    elif status == 422:
        if isinstance(detail, list):  # FastAPI's [{"loc": [...], "msg", "type"}, …]
            problems = []
            for item in detail:
                if isinstance(item, dict):
                    loc = item.get("loc")
                    where = ".".join(map(str, loc)) if isinstance(loc, list) else "request"
                    problems.append(f"{where}: {item.get('msg') or item.get('type') or 'invalid'}")
            text = "; ".join(problems) or _excerpt(response)
        kind, reason = "validation_error", f"ElevenLabs rejected the request as invalid: {text}"
    elif status >= 500:
        return ElevenLabsError(
            "server_error",
            f"ElevenLabs failed with HTTP {status}: {text}; the call may still have been placed",
            may_have_dialled=True,
        )
    else:
        kind = "client_error" if 400 <= status < 500 else "unexpected_status"
        reason = f"ElevenLabs answered HTTP {status}: {text}"
    return ElevenLabsError(kind, reason)


def _excerpt(response: requests.Response) -> str:
    """Return the start of the body, quoted, or ``(empty body)``."""
    text = response.text.strip()
    if not text:
        return "(empty body)"
    return repr(text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else ""))


def _caused_by(exc: BaseException, kind: type) -> bool:
    """Tell whether ``kind`` is anywhere in the chain requests and urllib3 wrap around ``exc``."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += current.args
    return False
