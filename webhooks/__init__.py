"""What a webhook delivery does: shared by the endpoints, replay and reconciliation."""
