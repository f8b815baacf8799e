"""Metrics, logs and health: what the service tells its operators about itself."""
