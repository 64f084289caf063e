"""The clock is injected so that tests can move time (consent expiry, key validity)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import common_pb2

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


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of ``value``."""
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def proto_date(value: date) -> common_pb2.Date:
    """A spehub.v1 Date of ``value``."""
    return common_pb2.Date(year=value.year, month=value.month, day=value.day)
