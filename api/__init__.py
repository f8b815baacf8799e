"""The HTTP API's schemas (marshmallow), phone numbers, and its OpenAPI document."""
