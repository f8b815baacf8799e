"""The API token and webhook secret every test's app is configured with."""

API_TOKEN = "test-token-0123456789abcdef"
WEBHOOK_SECRET = "wsec_test_0123456789abcdef"
