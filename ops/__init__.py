"""Operator tooling: ``python -m ops verify`` checks a database against the rollout checklist."""
