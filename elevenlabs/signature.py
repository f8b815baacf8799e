"""The ``ElevenLabs-Signature`` header: ``t=<unix seconds>,v0=<hex HMAC-SHA256>``.

The HMAC is over ``"<t>.<raw body>"`` with the webhook secret: checked on the raw
bytes as received, in constant time, with the timestamp bounded both ways
(ElevenLabs' SDK only bounds the past, so a future-dated capture replays forever).
"""

import hashlib
import hmac
import re

HEADER = "ElevenLabs-Signature"

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
# Ten or eleven digits cover every plausible unix time; more is garbage.
_UNIX_SECONDS = re.compile(r"[0-9]{1,11}")


class SignatureError(Exception):
    """The signature is missing, malformed, stale or wrong; the message says which."""


def expected_digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def fresh(header: str | None, *, now: float, past: int, future: int) -> tuple[str, list[str]]:
    """Return the header's timestamp and ``v0`` digests if it is within the window; else raise.

    Checked before the body is read: a header that cannot sign anything saves reading it.
    """
    if not header or not header.strip():
        raise SignatureError(f"missing {HEADER} header")
    timestamp, digests = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            if timestamp is not None:
                raise SignatureError("signature header names more than one timestamp")
            timestamp = value.strip()
        elif key == "v0":
            digests.append(value.strip())
    if timestamp is None or not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("signature header has no valid t=<unix seconds>")
    # Several v0 values are allowed so a rotated secret can overlap the old one.
    digests = [d.lower() for d in digests if _HEX_DIGEST.fullmatch(d)]
    if not digests:
        raise SignatureError("signature header has no valid v0=<hex digest>")
    age = now - int(timestamp)
    if age > past:
        raise SignatureError(f"signature timestamp is {int(age)}s old; the limit is {past}s")
    if -age > future:
        raise SignatureError(
            f"signature timestamp is {int(-age)}s in the future; the limit is {future}s"
        )
    return timestamp, digests


def signed(secret: str, header: tuple[str, list[str]], body: bytes) -> None:
    """Raise SignatureError unless one of a ``fresh`` header's digests signs ``body``."""
    timestamp, digests = header
    expected = expected_digest(secret, timestamp, body).encode("ascii")
    # Compare against every candidate, without stopping early, in constant time each.
    matches = [hmac.compare_digest(expected, d.encode("ascii")) for d in digests]
    if not any(matches):
        raise SignatureError("signature does not match the body")
