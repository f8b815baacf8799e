"""Plain-SQL models: small dataclasses and functions taking a connection first."""
