"""The ElevenLabs simulator: a real local HTTP server that places, plays and reports calls.

The outcome of a call is chosen by the last digit of the number called, like a
payment sandbox's test cards (DESIGN.md, "The sandbox"). Tests may instead
script the outbound-call answer with ``answer()``; every request is kept in
``received`` for them to check.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from elevenlabs.simulator import answers, routes, script

log = logging.getLogger("elevenlabs.simulator")

# Last digit of to_number → what happens; anything else is answered.
BUSY, NO_ANSWER, SILENT, REFUSED, OVER_LIMIT, HANGS = "1", "2", "3", "4", "5", "6"
FAILURE_REASONS = {BUSY: "busy", NO_ANSWER: "no-answer"}
# From the outbound call's answer being sent to the driver picking up (or not).
RING_SECONDS = 1.0


@dataclass
class Received:
    """One request as the simulator saw it."""

    path: str
    api_key: str | None
    body: dict | None

    @property
    def call_sid(self) -> str | None:
        """Return the call_sid passed as a dynamic variable, if any."""
        client_data = (self.body or {}).get("conversation_initiation_client_data") or {}
        return (client_data.get("dynamic_variables") or {}).get("call_sid")


@dataclass
class Scripted:
    """The answer a test chose for every outbound call, instead of the simulation."""

    body: dict
    status: int
    raw: str | None
    on_request: Callable[[Received], None] | None
    hang: bool
    fresh_ids: bool


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        """Log nothing per request: the service logs its side of every exchange."""


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
        self.scripted: Scripted | None = None
        # conversation_id → the HTTP status its details endpoint answers instead (429, 500).
        self.conversation_faults: dict[str, int] = {}
        self._active = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        app = routes.build(self)
        self._server = make_server(host, port, app, threaded=True, request_handler=_Quiet)
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "Simulator":
        """Serve in a background thread; return self."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and let every held answer and playing call go."""
        self.release()
        self._server.shutdown()
        self._server.server_close()

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
        self.scripted = Scripted(body, status, raw, on_request, hang, fresh_ids)

    def release(self) -> None:
        """Let every held answer go."""
        self._release.set()

    def place(self, call: dict) -> tuple[int, dict, Callable[[], None] | None]:
        """Simulate ElevenLabs placing ``call``; return the status, the body, and what rings it.

        The third is to call once the answer is on the wire: then the phone rings.
        """
        digit = call["to_number"][-1:]
        if digit == REFUSED:
            msg = "Value error, this number cannot be called from your phone number"
            where = ["body", "to_number"]
            problem = answers.problem("value_error", where, msg, call["to_number"])
            return 422, {"detail": [problem]}, None
        if digit == OVER_LIMIT or not self._take_line():
            return 429, answers.ERROR_429_CONCURRENCY, None
        if digit == HANGS:
            # Past the caller's read timeout; then the call is placed after all.
            self._release.wait(self.hang_seconds)
        conversation_id, twilio_sid = script.new_ids()
        document = script.conversation(call, conversation_id, twilio_sid)
        with self._lock:
            self.conversations[conversation_id] = document
        ring = threading.Thread(target=self._play, args=(document, digit), daemon=True)
        answer = {**answers.ANSWER_OK, "conversation_id": conversation_id, "callSid": twilio_sid}
        return 200, answer, ring.start

    def _take_line(self) -> bool:
        """Count one more conversation at once, or say the plan's limit is reached."""
        with self._lock:
            if self._active >= self.concurrency:
                return False
            self._active += 1
            return True

    def _play(self, document: dict, digit: str) -> None:
        """Ring, then talk the call through and report it as ElevenLabs would."""
        try:
            # Ringing: the service records the outbound call's answer meanwhile.
            if self._release.wait(RING_SECONDS):
                return
            if digit in FAILURE_REASONS:
                reason = FAILURE_REASONS[digit]
                script.fail(document, reason)
                self._send("post-call", script.call_initiation_failure(document, reason))
                return
            self._talk(document, send=digit != SILENT)
        finally:
            with self._lock:
                self._active -= 1

    def _talk(self, document: dict, *, send: bool) -> None:
        """Say each scripted turn at its time, then finish; webhooks only when ``send``."""
        started = time.monotonic()
        document["status"] = "in-progress"
        document["metadata"]["start_time_unix_secs"] = int(time.time())
        for turn in script.turns(document, self.call_seconds):
            if self._release.wait(max(0.0, started + turn["time_in_call_secs"] - time.monotonic())):
                return
            document["transcript"].append(turn)
            if send and turn["message"]:
                self._send("transcription", script.line_webhook(document, turn))
        script.finish(document, max(1, round(time.monotonic() - started)))
        if send:
            self._send("post-call", script.post_call_transcription(document))

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

    def listing(self, args) -> dict:
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

    def scripted_answer(self, seen: Received) -> tuple[int, dict | str]:
        """Return the status and body (JSON, or raw text) the test scripted."""
        chosen = self.scripted
        if chosen.on_request:
            chosen.on_request(seen)
        if chosen.hang:
            self._release.wait(timeout=30)
        if chosen.raw is not None:
            return chosen.status, chosen.raw
        if not chosen.fresh_ids:
            return chosen.status, chosen.body
        conversation_id, twilio_sid = script.new_ids()
        return chosen.status, {
            **chosen.body,
            "conversation_id": conversation_id,
            "callSid": twilio_sid,
        }

    def record(self, path: str, api_key: str | None, body) -> Received:
        """Keep a request as received; return it."""
        seen = Received(path, api_key, body)
        self.received.append(seen)
        return seen

    @property
    def in_progress(self) -> int:
        """Return how many conversations are under way (the concurrency limit counts them)."""
        return self._active
