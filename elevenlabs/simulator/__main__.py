"""``python -m elevenlabs.simulator``: serve the ElevenLabs simulator until Ctrl-C."""

import argparse
import os
import sys
import threading

import config
from elevenlabs.simulator import from_env


def main(argv=None) -> int:
    """Serve the simulator for a service at ``--webhook-url``."""
    parser = argparse.ArgumentParser(prog="python -m elevenlabs.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--webhook-url", default="", help="the service's base URL, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument(
        "--webhook-secret",
        default="",
        help="signs the webhooks (the service's ELEVENLABS_WEBHOOK_SECRET)",
    )
    parser.add_argument("--api-key", default="", help="the only xi-api-key accepted (default: any)")
    args = parser.parse_args(argv)
    try:
        simulator = from_env(
            os.environ,
            host=args.host,
            port=args.port,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            api_key=args.api_key,
        )
    except (config.ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    simulator.start()
    to = args.webhook_url or "nowhere (no --webhook-url)"
    print(f"ElevenLabs simulator on {simulator.base_url}; webhooks to {to}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
