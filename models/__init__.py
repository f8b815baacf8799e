"""Plain-SQL models: small dataclasses, and functions that take a connection first
and never commit on their own account (the caller decides the transaction)."""
