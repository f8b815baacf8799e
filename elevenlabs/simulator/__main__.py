"""Serve the ElevenLabs simulator until Ctrl-C.

It signs its webhooks with ELEVENLABS_WEBHOOK_SECRET (unsigned when unset) and
accepts only ELEVENLABS_API_KEY as xi-api-key (any when unset): the service's
own settings. SIMULATOR_CONCURRENCY (default 5) conversations at once, each
SIMULATOR_CALL_SECONDS long (default 8).
"""

import argparse
import os
import sys
import threading
from urllib.parse import urlsplit

import config
from elevenlabs.simulator import Simulator


def port_argument(text: str) -> int:
    """Return a TCP port; the socket layer would wrap 99999 silently onto another port."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port between 1 and 65535: {text!r}")
    return port


def webhook_url_argument(text: str) -> str:
    """Return the service's base URL; anything else would fail each webhook unseen."""
    if text == "":  # the default (argparse parses it too): send no webhooks
        return text
    try:
        parts = urlsplit(text)
        usable = parts.scheme in ("http", "https") and parts.hostname
    except ValueError:  # an unclosed IPv6 bracket
        usable = False
    if not usable:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL: {text!r}")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elevenlabs.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_argument, default=8100)
    parser.add_argument(
        "--webhook-url",
        type=webhook_url_argument,
        default="",
        help="the service's base URL, e.g. http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--hang-seconds", type=float, default=30.0, help="how long a number ending in 6 hangs"
    )
    args = parser.parse_args(argv)
    try:
        simulator = Simulator(
            host=args.host,
            port=args.port,
            webhook_url=args.webhook_url,
            # Secrets from the environment, never on a command line every local user can read.
            webhook_secret=os.environ.get("ELEVENLABS_WEBHOOK_SECRET", ""),
            api_key=os.environ.get("ELEVENLABS_API_KEY", ""),
            concurrency=config.number(os.environ, "SIMULATOR_CONCURRENCY", 5, int),
            call_seconds=config.number(os.environ, "SIMULATOR_CALL_SECONDS", 8.0),
            hang_seconds=args.hang_seconds,
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
