"""Calls placed through the service against the simulator (conftest's ``service``), read back."""

import requests
from credentials import API_TOKEN
from gunicorn_server import wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SPOKEN_LINES = 5  # the simulator's script: five turns with a message, then end_call


def place(service, number: str) -> requests.Response:
    """Ask the service to call driver 42 on ``number``; return its answer."""
    order = {"driver_id": 42, "phone_number": number, "driver_name": "Dana"}
    url = f"{service}/driver_data/call-elevenlabs"
    return requests.post(url, json=order, headers=AUTH, timeout=10)


def get(url: str) -> dict:
    """Return the JSON the service (or the simulator) answers at ``url``."""
    return requests.get(url, headers=AUTH, timeout=10).json()


def call_when(service, call_sid: str, condition, what: str) -> dict:
    """Return the call once ``condition(call)`` holds (within 15 s)."""

    def ready():
        call = get(f"{service}/driver_data/calls/{call_sid}")
        return call if condition(call) else None

    return wait_for(ready, what, timeout=15)
