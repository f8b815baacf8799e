"""A stand-in for ElevenLabs that speaks its real shapes: ``make run``'s and the tests' ElevenLabs.

Never started in production. ``python -m elevenlabs.simulator --help`` runs it alone.
"""

from elevenlabs.client import OUTBOUND_CALL_PATH
from elevenlabs.simulator.answers import (
    ANSWER_OK,
    ANSWER_UNSUCCESSFUL,
    ERROR_401,
    ERROR_422,
    ERROR_429_BUSY,
    ERROR_429_CONCURRENCY,
)
from elevenlabs.simulator.server import Simulator

__all__ = [
    "ANSWER_OK",
    "ANSWER_UNSUCCESSFUL",
    "ERROR_401",
    "ERROR_422",
    "ERROR_429_BUSY",
    "ERROR_429_CONCURRENCY",
    "OUTBOUND_CALL_PATH",
    "Simulator",
]
