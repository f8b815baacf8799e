"""Who may call what: the API tokens a request presents, checked in constant time."""

import hmac

from flask import request


def presented_token(*schemes: str) -> str:
    """Return the Authorization header's bearer token or basic password (any user), else ""."""
    auth = request.authorization
    if auth is None or auth.type not in schemes:
        return ""
    return (auth.password if auth.type == "basic" else auth.token) or ""


def accepted(given: str, tokens: list[str]) -> bool:
    """Tell whether ``given`` is one of ``tokens``; compared with all, the time says not which."""
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in tokens]
    return bool(given) and any(matches)
