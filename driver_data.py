"""Blueprint ``/driver_data``: create a call to a driver, and look a call up."""

from flask import Blueprint

bp = Blueprint("driver_data", __name__, url_prefix="/driver_data")
