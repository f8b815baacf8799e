"""Finding the conversation a webhook belongs to, and saving what was said on it."""
