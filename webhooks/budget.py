"""A budget of events per minute, for what strangers can make us do (record unsigned deliveries)."""

import threading
import time


class Budget:
    """A token bucket: ``take`` succeeds ``per_minute`` times a minute, in bursts up to that."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one; return whether there was."""
        with self.lock:
            now = time.monotonic()
            refill = (now - self.at) * self.per_minute / 60
            self.tokens, self.at = min(self.per_minute, self.tokens + refill), now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True
