"""``GET /healthz``: is this process up and can it reach its database."""

import psycopg
from flask import Blueprint
from psycopg_pool import PoolTimeout

from db import get_conn
from errors import error_response, first_line

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 when a query round-trips to the database, 503 otherwise."""
    try:
        get_conn().execute("SELECT 1")
    except (psycopg.Error, PoolTimeout) as exc:
        reason = first_line(exc)
        return error_response(
            503, "database_unavailable", "The database cannot be reached.", {"reason": reason}
        )
    return {"status": "ok"}
