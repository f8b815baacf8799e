"""``GET /healthz``: is this process up and can it reach its database."""

from flask import Blueprint

import db
from errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database answers a query, 503 (within about a second) otherwise."""
    reason = db.ping()
    if reason is not None:
        return error_response(
            503, "database_unavailable", "The database cannot be reached.", {"reason": reason}
        )
    return {"status": "ok"}
