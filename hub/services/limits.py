"""Per-participant limits: a request rate (token bucket) and concurrent streams.

Kept per hub process: with N replicas behind a balancer a participant gets up
to N times the rate; set the rate per replica accordingly. One participant
exhausting its own allowance never slows the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hub.errors import LimitExceededError, RateLimitedError


class ParticipantLimits:
    """Admits requests and streams per participant."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        max_streams: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self.max_streams = max_streams
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._streams: dict[str, int] = {}

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

    @contextmanager
    def stream(self, participant_id: str) -> Iterator[None]:
        """Hold one of the participant's stream slots. Raises LimitExceededError when all are taken."""
        with self._lock:
            open_now = self._streams.get(participant_id, 0)
            if open_now >= self.max_streams:
                raise LimitExceededError(
                    f"{participant_id!r} already has {open_now} open streams (the limit); close one or reuse it"
                )
            self._streams[participant_id] = open_now + 1
        try:
            yield
        finally:
            with self._lock:
                self._streams[participant_id] -= 1
