"""The clock is injected so that tests can move time (consent expiry, key validity)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch."""
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def from_us(value: int) -> datetime:
    """The UTC instant of microseconds since the Unix epoch (the inverse of ``to_us``)."""
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)
