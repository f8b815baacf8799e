"""A stand-in for ElevenLabs that speaks its real shapes: ``make run``'s and the tests' ElevenLabs.

Never started in production. ``python -m elevenlabs.simulator --help`` runs it alone.
"""

import config
from elevenlabs.simulator.answers import (
    ANSWER_OK,
    ANSWER_UNSUCCESSFUL,
    ERROR_401,
    ERROR_422,
    ERROR_429_BUSY,
    ERROR_429_CONCURRENCY,
    OUTBOUND_CALL_PATH,
)
from elevenlabs.simulator.server import Received, Simulator

__all__ = [
    "ANSWER_OK",
    "ANSWER_UNSUCCESSFUL",
    "ERROR_401",
    "ERROR_422",
    "ERROR_429_BUSY",
    "ERROR_429_CONCURRENCY",
    "OUTBOUND_CALL_PATH",
    "Received",
    "Simulator",
    "from_env",
]


def from_env(environ, **settings) -> Simulator:
    """Return a simulator sized by ``SIMULATOR_CONCURRENCY`` and ``SIMULATOR_CALL_SECONDS``."""
    return Simulator(
        concurrency=config._number(environ, "SIMULATOR_CONCURRENCY", 5, int),
        call_seconds=config._number(environ, "SIMULATOR_CALL_SECONDS", 8.0),
        **settings,
    )
