"""The old code's traffic, in threads, for the migrations bench.

Half the threads insert calls the legacy way (no call_sid) and a first
transcription line for each; the other half act as the legacy webhook: look a
known call up by conversation_id and store a line under it. Every request is
timed and counted against the step that was running when it started.
"""

import random
import threading
import time
from collections import defaultdict

import psycopg

PAUSE_SECONDS = 0.005  # a busy but not saturated service: ~150 requests/s per thread
REQUEST_TIMEOUT = "30s"  # far above the 2 s target: only there so the bench cannot hang


class Workload:
    """Run legacy requests in threads until stopped; keep per-step statistics."""

    def __init__(self, url: str, threads: int, known_conversations: int):
        self.url, self.threads, self.known = url, threads, known_conversations
        self.step = "before steps"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.by_step = defaultdict(lambda: {"requests": 0, "errors": 0, "max_latency": 0.0})
        self.first_error = None
        self.workers = [
            threading.Thread(target=self.serve, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self):
        """Start the threads."""
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        """Stop the threads and wait for them."""
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=60)

    def mark(self, step: str) -> None:
        """Count the requests that start from now on against ``step``."""
        self.step = step

    def stats(self, step: str | None) -> dict:
        """Return one step's figures, or all steps' together when ``step`` is None."""
        with self.lock:
            chosen = [self.by_step[step]] if step else list(self.by_step.values())
            return {
                "requests": sum(s["requests"] for s in chosen),
                "errors": sum(s["errors"] for s in chosen),
                "max_latency": max((s["max_latency"] for s in chosen), default=0.0),
                "first_error": self.first_error,
            }

    def serve(self, number: int) -> None:
        """Send one kind of legacy request in a loop until stopped."""
        request = self.legacy_insert if number % 2 == 0 else self.legacy_webhook
        rng = random.Random(number)
        with psycopg.connect(self.url, autocommit=True, application_name="legacy-app") as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (REQUEST_TIMEOUT,))
            sequence = 0
            while not self.stop.is_set():
                sequence += 1
                step, started = self.step, time.monotonic()
                error = None
                try:
                    request(conn, rng, f"{number}_{sequence}")
                except psycopg.Error as exc:  # counted, and the next request goes on
                    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                self.record(step, time.monotonic() - started, error)
                time.sleep(PAUSE_SECONDS)

    def record(self, step: str, latency: float, error: str | None) -> None:
        """Add one request to its step's figures."""
        with self.lock:
            figures = self.by_step[step]
            figures["requests"] += 1
            figures["max_latency"] = max(figures["max_latency"], latency)
            if error:
                figures["errors"] += 1
                self.first_error = self.first_error or error

    def legacy_insert(self, conn, rng, tag: str) -> None:
        """Create a call as the old code does, then its first transcription line."""
        with conn.transaction():
            conn.execute(
                "INSERT INTO calls (driver_id, conversation_id, phone_number, status) "
                "VALUES (%s, %s, %s, 'initiated')",
                (rng.choice([None, rng.randint(1, 5000)]), f"conv_live_{tag}", "+14155550123"),
            )
            conn.execute(
                'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
                "VALUES (%s, 'agent', 'hello', now())",
                (f"conv_live_{tag}",),
            )

    def legacy_webhook(self, conn, rng, tag: str) -> None:
        """Look a known call up by conversation_id and store a line under it."""
        conversation_id = f"conv_{rng.randint(1, self.known)}"
        row = conn.execute(
            "SELECT id, status FROM calls WHERE conversation_id = %s", (conversation_id,)
        ).fetchone()
        if row is None:
            raise psycopg.DataError(f"call {conversation_id} not found")
        conn.execute(
            'INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp") '
            "VALUES (%s, 'user', %s, now())",
            (conversation_id, f"webhook line {tag}"),
        )
