"""Reading ElevenLabs' conversations for reconciliation: one conversation, and the list.

Every way a read can fail is one ``Unavailable`` whose ``reason`` an operator can
read; the call stays as it is for the next run. Reads change nothing at
ElevenLabs, so unlike the outbound call they are safe to ask again.
"""

import requests

from elevenlabs.client import EXCERPT_CHARS, ElevenLabsClient
from elevenlabs.deadline import Deadline
from errors import first_line

CONVERSATIONS_PATH = "/v1/convai/conversations"
PAGE_SIZE = 100  # the list's largest page


class Unavailable(Exception):
    """ElevenLabs could not tell us about a conversation just now; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Conversations:
    """GET one conversation or a page of the list, over the outbound-call client's session."""

    def __init__(self, client: ElevenLabsClient, base_url: str):
        # The same session, key, proxies, timeouts and deadline as the calls we place.
        self.session, self.headers = client.session, client.headers
        self.timeout, self.deadline = client.timeout, client.deadline
        self.url = base_url.rstrip("/") + CONVERSATIONS_PATH

    @classmethod
    def from_config(cls, config) -> "Conversations":
        return cls(ElevenLabsClient.from_config(config), config["ELEVENLABS_BASE_URL"])

    def conversation(self, conversation_id: str) -> dict:
        """Return a conversation's details (status, transcript, metadata, analysis)."""
        document = self._get(f"{self.url}/{requests.utils.quote(conversation_id, safe='')}")
        if not isinstance(document.get("status"), str):
            raise Unavailable(f"conversation {conversation_id}: the answer has no status")
        return document

    def page(self, *, started: tuple[int, int], cursor: str | None = None) -> dict:
        """Return one page of the conversations started between two unix times, newest first."""
        params = {
            "call_start_after_unix": started[0],
            "call_start_before_unix": started[1],
            "page_size": PAGE_SIZE,
            "cursor": cursor or None,  # requests leaves out a None parameter
        }
        page = self._get(self.url, params)
        if not isinstance(page.get("conversations"), list):
            raise Unavailable("the conversation list's answer has no conversations array")
        return page

    def _get(self, url: str, params: dict | None = None) -> dict:
        try:
            with Deadline(self.deadline):  # an answer dripping a byte a second is cut
                # No redirect: it would carry our API key to wherever it points.
                response = self.session.get(
                    url,
                    params=params,
                    headers=self.headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            raise Unavailable(
                f"no answer from ElevenLabs ({type(exc).__name__}: "
                f"{first_line(exc)[:EXCERPT_CHARS]})"
            ) from None
        if response.status_code != 200:
            raise Unavailable(
                f"ElevenLabs answered HTTP {response.status_code}: "
                f"{response.text.strip()[:EXCERPT_CHARS] or '(empty body)'}"
            )
        try:
            body = response.json()
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            body = None
        if not isinstance(body, dict):
            raise Unavailable("ElevenLabs answered 200 with a body that is not a JSON object")
        return body
