"""What a webhook delivery does: shared by the endpoints and by the replay command."""
