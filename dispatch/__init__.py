"""Batches: every driver reached within ElevenLabs' limits and their calling hours.

``schemas`` (the batch request), ``windows`` (calling hours per time zone),
``batches`` and ``suppressions`` (their SQL), ``placing`` (the one way a call is
placed: row before dialling), ``claims`` (what may be dialled now, under the
concurrency cap), ``rounds`` (one pass of the worker), ``tasks`` (procrastinate).
"""
