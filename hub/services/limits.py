"""Per-participant limits: a request rate (token bucket), concurrent streams, and unary calls
waiting for their request message.

Kept per hub process: with N replicas behind a balancer a participant gets up
to N times the rate; set the rate per replica accordingly. One participant
exhausting its own allowance never slows the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from hub.errors import LimitExceededError, RateLimitedError


class ParticipantLimits:
    """Admits requests and streams per participant."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        max_streams: int,
        max_waiting: int = 32,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self.max_streams = max_streams
        self.max_waiting = max_waiting
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._streams: dict[str, int] = {}
        self._waiting: dict[str, int] = {}

    def admit(self, participant_id: str) -> None:
        """Take one request from the participant's bucket. Raises RateLimitedError with a retry hint."""
        now = self.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(participant_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[participant_id] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimitedError(
                    f"rate limit of {self.rate:g} requests/s (burst {self.burst:g}) reached for "
                    f"{participant_id!r}; retry after {int(wait * 1000) + 1} ms",
                    retry_after=wait,
                )
            self._buckets[participant_id] = (tokens - 1.0, now)

    def stream(self, participant_id: str) -> AbstractContextManager[None]:
        """Hold one of the participant's stream slots. Raises LimitExceededError when all are taken."""
        return self._held(
            self._streams,
            self.max_streams,
            participant_id,
            "open streams (the limit); close one or reuse it",
        )

    def waiting(self, key: str) -> AbstractContextManager[None]:
        """Hold one of ``key``'s places for a unary call whose headers arrived but not its request
        message yet (a client sends both at once: a call stays here only on a slow or hostile link).
        Raises LimitExceededError when all are taken."""
        return self._held(
            self._waiting,
            self.max_waiting,
            key,
            "calls waiting for their request message (the limit); send each request with its call",
        )

    @contextmanager
    def _held(self, counts: dict[str, int], limit: int, key: str, what: str) -> Iterator[None]:
        with self._lock:
            open_now = counts.get(key, 0)
            if open_now >= limit:
                raise LimitExceededError(f"{key!r} already has {open_now} {what}")
            counts[key] = open_now + 1
        try:
            yield
        finally:
            with self._lock:
                if counts[key] == 1:
                    del counts[key]  # a certificate key seen once must not stay for ever
                else:
                    counts[key] -= 1
