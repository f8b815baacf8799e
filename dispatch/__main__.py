"""``python -m dispatch worker``: one dispatch worker (of any number) until SIGINT/SIGTERM."""

import argparse
import logging
import sys

import procrastinate

import config
import db
from dispatch import settings, tasks
from dispatch.rounds import Worker
from elevenlabs.client import ElevenLabsClient
from errors import first_line


def main(argv=None) -> int:
    """Parse the command line and run the worker; every failure is one line."""
    parser = argparse.ArgumentParser(prog="python -m dispatch")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--database-url")
    parser.add_argument("--name", default=None, help="worker name in procrastinate's logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        url = db.url_of(args.database_url)
        service = config.from_env()
        config.check_numbers(service)  # a bad timeout or pool size fails here, not each dial
        pool = db.open_pool(url, min_size=1, max_size=12, timeout=10)
        worker = Worker(pool, ElevenLabsClient.from_config(service), settings.load(), service)
    except (db.DatabaseUnavailable, config.ConfigError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    tasks.use(worker)
    connector = procrastinate.PsycopgConnector(conninfo=url)
    with tasks.app.replace_connector(connector) as app:
        # Finished jobs are deleted: the work's record is call_batch_entries, not the queue.
        # Two jobs at once (each in its own thread): a reconcile run waiting on ElevenLabs
        # holds one, and a second run never takes the other, so dialling goes on.
        app.run_worker(
            name=args.name,
            delete_jobs="always",
            install_signal_handlers=True,
            concurrency=tasks.CONCURRENCY,
        )
    pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
