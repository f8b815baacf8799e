"""The ElevenLabs simulator: a real local HTTP server that places, plays and reports calls.

The outcome of a call is chosen by the last digit of the number called, like a
payment sandbox's test cards (README, "The sandbox"). Tests may instead script
the outbound-call answer with ``answer()``; every request is kept in ``received``.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

from elevenlabs.client import OUTBOUND_CALL_PATH
from elevenlabs.conversations import CONVERSATIONS_PATH
from elevenlabs.simulator import answers, script

log = logging.getLogger("elevenlabs.simulator")

# Last digit of to_number → what happens; anything else is answered.
BUSY, NO_ANSWER, SILENT, REFUSED, OVER_LIMIT, HANGS = "1", "2", "3", "4", "5", "6"
FAILURE_REASONS = {BUSY: "busy", NO_ANSWER: "no-answer"}
RING_SECONDS = 1.0  # from the outbound call's answer to the driver picking up (or not)


@dataclass
class Received:
    """One request as the simulator saw it."""

    path: str
    api_key: str | None
    body: dict | None

    @property
    def call_sid(self) -> str | None:
        client_data = (self.body or {}).get("conversation_initiation_client_data") or {}
        return (client_data.get("dynamic_variables") or {}).get("call_sid")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        """Log nothing per request: the service logs its side of every exchange."""


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class Simulator:
    """ElevenLabs' outbound call, conversations and webhooks on ``host:port`` (0: a free one)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str = "",
        webhook_secret: str = "",
        api_key: str = "",
        concurrency: int = 5,
        call_seconds: float = 8.0,
        hang_seconds: float = 30.0,
    ):
        self.webhook_url = webhook_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.api_key = api_key
        self.concurrency = concurrency
        self.call_seconds = call_seconds
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self.conversations: dict[str, dict] = {}
        self.deliveries: list[tuple[str, int | None]] = []
        # conversation_id → the HTTP status its details endpoint answers instead (429, 500).
        self.conversation_faults: dict[str, int] = {}
        # The HTTP status the conversation list answers instead (429, 500), or None.
        self.list_fault: int | None = None
        self.in_progress = 0  # conversations under way: the concurrency limit counts them
        self._scripted: Callable[[Received], Response] | None = None
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = make_server(host, port, self._app(), threaded=True, request_handler=_Quiet)
        self.base_url = f"http://{host}:{self._server.server_port}"

    def start(self) -> "Simulator":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving and let every held answer and playing call go."""
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Let every held answer go."""
        self._release.set()

    def answer(
        self,
        body=answers.ANSWER_OK,
        *,
        status: int = 200,
        raw: str | None = None,
        on_request: Callable[[Received], None] | None = None,
        hang: bool = False,
        fresh_ids: bool = False,
    ) -> None:
        """Answer every outbound call with ``body`` (or ``raw`` text) and ``status``; play nothing.

        ``on_request`` runs while the request is held, before the answer: the
        moment to look at the database. ``hang`` holds the answer until
        ``release()``; ``fresh_ids`` gives each call its own conversation_id.
        """

        def scripted(seen: Received) -> Response:
            if on_request:
                on_request(seen)
            if hang:
                self._release.wait(timeout=30)
            if raw is not None:
                return Response(raw, status=status, content_type="text/html")
            return _json(script.with_new_ids(body) if fresh_ids else body, status)

        self._scripted = scripted

    def _app(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def keep_and_check_key():
            key = request.headers.get("xi-api-key")
            self.received.append(Received(request.path, key, request.get_json(silent=True)))
            if self.api_key and key != self.api_key:
                return _json(answers.ERROR_401, 401)
            return None

        @app.post(OUTBOUND_CALL_PATH)
        def outbound_call():
            if self._scripted:
                return self._scripted(self.received[-1])
            body = request.get_json(silent=True)
            problems = answers.outbound_call_problems(body)
            return _json({"detail": problems}, 422) if problems else self._place(body)

        @app.get(CONVERSATIONS_PATH)
        def conversation_list():
            if self.list_fault is not None:
                return _json(answers.FAULTS[self.list_fault], self.list_fault)
            problem = answers.list_problem(request.args)
            if problem:
                return _json({"detail": [problem]}, 422)
            return _json(self._listing(request.args))

        @app.get(f"{CONVERSATIONS_PATH}/<conversation_id>")
        def conversation(conversation_id):
            fault = self.conversation_faults.get(conversation_id)
            if fault is not None:
                return _json(answers.FAULTS[fault], fault)
            document = self.conversations.get(conversation_id)
            if document is None:
                return _json(answers.ERROR_404_CONVERSATION, 404)
            return _json(document)

        @app.errorhandler(404)
        @app.errorhandler(405)
        def not_here(error):
            # FastAPI's own answer for a URL or method it does not serve.
            return _json({"detail": error.name}, error.code)

        return app

    def _place(self, call: dict) -> Response:
        """Place ``call`` as ElevenLabs would; the phone rings once the answer is on the wire."""
        digit = call["to_number"][-1:]
        if digit == REFUSED:
            msg = "Value error, this number cannot be called from your phone number"
            refused = answers.problem("value_error", ["body", "to_number"], msg, call["to_number"])
            return _json({"detail": [refused]}, 422)
        with self._lock:
            over_limit = digit == OVER_LIMIT or self.in_progress >= self.concurrency
            if not over_limit:
                self.in_progress += 1
        if over_limit:
            return _json(answers.ERROR_429_CONCURRENCY, 429)
        if digit == HANGS:
            # Past the caller's read timeout; then the call is placed after all.
            self._release.wait(self.hang_seconds)
        answer = script.with_new_ids(answers.ANSWER_OK)
        document = script.conversation(call, answer["conversation_id"], answer["callSid"])
        with self._lock:
            self.conversations[answer["conversation_id"]] = document
        response = _json(answer)
        ring = threading.Thread(target=self._play, args=(document, digit), daemon=True)
        response.call_on_close(ring.start)
        return response

    def _play(self, document: dict, digit: str) -> None:
        """Ring, then talk the call through and report it as ElevenLabs would."""
        try:
            # Ringing: the service records the outbound call's answer meanwhile.
            if self._release.wait(RING_SECONDS):
                return
            if digit in FAILURE_REASONS:
                self._send("post-call", script.fail(document, FAILURE_REASONS[digit]))
                return
            send = digit != SILENT
            started = time.monotonic()
            document["status"] = "in-progress"
            document["metadata"]["start_time_unix_secs"] = int(time.time())
            for turn in script.turns(document, self.call_seconds):
                if self._release.wait(
                    max(0.0, started + turn["time_in_call_secs"] - time.monotonic())
                ):
                    return
                document["transcript"].append(turn)
                if send and turn["message"]:
                    self._send("transcription", script.line_webhook(document, turn))
            script.finish(document, max(1, round(time.monotonic() - started)))
            if send:
                self._send("post-call", script.post_call_transcription(document))
        finally:
            with self._lock:
                self.in_progress -= 1

    def _send(self, endpoint: str, payload: dict) -> None:
        """POST one signed webhook to the service; a failure is logged, never retried."""
        if not self.webhook_url:
            return
        url = f"{self.webhook_url}/webhooks/elevenlabs/{endpoint}"
        body = json.dumps(payload).encode()
        try:
            status = requests.post(
                url, data=body, headers=script.signed_headers(self.webhook_secret, body), timeout=10
            ).status_code
        except requests.RequestException as exc:
            log.warning("webhook to %s not delivered: %s", url, exc)
            status = None
        self.deliveries.append((endpoint, status))

    def _listing(self, args) -> dict:
        """Return a page of conversations, newest first, as the list endpoint does."""
        after = int(args.get("call_start_after_unix") or 0)
        before = int(args.get("call_start_before_unix") or 2**62)
        size, offset = int(args.get("page_size") or 30), int(args.get("cursor") or 0)
        with self._lock:
            found = [
                doc
                for doc in self.conversations.values()
                if args.get("agent_id") in (None, doc["agent_id"])
                and after < doc["metadata"]["start_time_unix_secs"] < before
            ]
        found.sort(key=lambda doc: doc["metadata"]["start_time_unix_secs"], reverse=True)
        page, more = found[offset : offset + size], len(found) > offset + size
        return {
            "conversations": [script.summary(doc) for doc in page],
            "has_more": more,
            "next_cursor": str(offset + size) if more else None,
        }
