"""Blueprint ``/webhooks/elevenlabs``: what ElevenLabs sends back about our calls."""

from flask import Blueprint

bp = Blueprint("webhooks_elevenlabs", __name__, url_prefix="/webhooks/elevenlabs")
