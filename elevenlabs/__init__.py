"""ElevenLabs: the outbound-call client, the webhook signature, parsing what it sends."""
