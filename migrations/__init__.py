"""Numbered, plain-SQL migration scripts and the machinery they share (``kit``)."""
