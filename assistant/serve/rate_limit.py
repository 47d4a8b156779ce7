"""Requests per minute per caller: a token bucket per API key (or client
address when auth is off), refilled continuously. The same bucket, per client
address, is the budget of wrong API keys (:func:`.auth.require_role`).

Memory is bounded: past ``max_callers`` buckets, the full ones (callers idle long
enough to have refilled) are forgotten, then the longest-unused, as a caller never
seen before starts full anyway."""

from __future__ import annotations

import threading
import time

MAX_CALLERS = 10_000


class RateLimiter:
    def __init__(self, per_minute: int, max_callers: int = MAX_CALLERS):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, caller: str, now: float) -> float:
        tokens, stamp = self._buckets.get(caller, (self.capacity, now))
        return min(self.capacity, tokens + (now - stamp) * self.rate)

    def acquire(self, caller: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(caller, now)
            self._buckets.pop(caller, None)  # re-inserted last: the dict's order is least recently used first
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[caller] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_callers:
                self._forget(now)
            return wait

    def wait(self, caller: str) -> float:
        """The seconds until ``caller`` may go ahead (0: now), taking nothing."""
        with self._lock:
            tokens = self._tokens(caller, time.monotonic())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        """Down to 90% of the bound, so that the O(n) pass comes once per many new callers."""
        for caller in [c for c in self._buckets if self._tokens(c, now) >= self.capacity]:
            del self._buckets[caller]
        for caller in list(self._buckets)[:max(0, len(self._buckets) - self.max_callers * 9 // 10)]:
            del self._buckets[caller]

    def __len__(self) -> int:
        return len(self._buckets)
