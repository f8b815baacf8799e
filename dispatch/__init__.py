"""Batches: every driver reached within ElevenLabs' limits and their calling hours."""
