"""Phone numbers: what an E.164 number looks like, and how one appears in a log.

A driver's number is personal data: logs show ``+1415•••0123``, never the whole.
"""

import re

# [0-9], not \d (which takes any Unicode digit); \Z, not $ (which lets "\n" through).
E164 = re.compile(r"\+[1-9][0-9]{6,14}\Z")
# Any run of 7+ digits in free text (an error body may echo the number, with or without +).
DIGIT_RUN = re.compile(r"\+?(?<![0-9])[0-9]{7,}(?![0-9])")
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
    return DIGIT_RUN.sub(lambda found: mask_phone(found.group()), text)
