"""Phone numbers: what an E.164 number looks like, and how one appears in a log.

A driver's number is personal data: logs show ``+1415•••0123``, never the whole.
"""

import re

# [0-9], not \d (which takes any Unicode digit); \Z, not $ (which lets "\n" through).
E164 = re.compile(r"\+[1-9][0-9]{6,14}\Z")
# A phone number in free text (an error body or a library's log line may echo it):
# "+" and 7 to 15 digits, or 9 to 15 digits without it (the shortest national
# numbers), standing as a token of their own. Shorter runs are ids and counts (a
# 7-digit driver id); digits inside identifiers (legacy_1234567, hex call_sids)
# touch a letter or "_" and stay whole.
PHONE_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_.:-])(\+[0-9]{7,15}|[0-9]{9,15})(?![A-Za-z0-9_])")
HIDDEN = "•••"


def mask_phone(number: str | None) -> str:
    """Return the number with its middle digits hidden, e.g. ``+1415•••0123``."""
    if not number:
        return "(none)"
    plus = "+" if number.startswith("+") else ""
    digits = number[len(plus) :]
    tail = 4 if len(digits) >= 11 else 2
    head = min(4, max(1, len(digits) - tail - 3))  # at least three digits stay hidden
    if len(digits) < head + tail + 3:
        return plus + HIDDEN
    return f"{plus}{digits[:head]}{HIDDEN}{digits[-tail:]}"


def mask_phones_in(text: str) -> str:
    """Return ``text`` with every number in it masked."""
    return PHONE_IN_TEXT.sub(lambda found: mask_phone(found.group()), text)
