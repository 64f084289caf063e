"""Structured logs: one JSON object per line, with the request id and the calling participant.

The interceptor sets the request id (the caller's ``x-request-id`` if it sent a
sane one, else a new one, returned in the response metadata) and the
participant for the duration of each call. Log lines carry ids, codes and
reasons only: never names, contacts or national numbers (the call sites log
nothing else, and tests/test_consent.py checks a DEBUG run).
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
participant: contextvars.ContextVar[str] = contextvars.ContextVar("participant", default="")
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Fields a call site may add with ``extra=`` (anything else stays out of the line).
EXTRA_FIELDS = ("rpc_method", "code", "error", "incident", "refused")


def new_request_id(offered: str = "") -> str:
    """The caller's id if it is sane (so its own logs line up), else a fresh one."""
    return offered if SANE_ID.fullmatch(offered) else uuid.uuid4().hex[:16]


class EveryInterval:
    """At most one log line per key and interval, saying how many events it stands for: a flood of
    the same event from one caller writes a line every ``seconds``, not one per event."""

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._since_line: dict[str, tuple[int, float]] = {}  # key: (events since its line, line's time)

    def count(self, key: str) -> int:
        """Count one event of ``key``. Returns the number of its events since its last line, this one
        included, when a line is due now (the first event, or ``seconds`` after the last line); else 0."""
        now = self.monotonic()
        with self._lock:
            events, last = self._since_line.get(key, (0, -math.inf))
            if now - last >= self.seconds:
                self._since_line[key] = (0, now)
                return events + 1
            self._since_line[key] = (events + 1, last)
            return 0


class ContextFilter(logging.Filter):
    """Stamps each record with the request id and participant of the call it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.participant = participant.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in ("request_id", "participant"):
            value = getattr(record, name, "")
            if value:
                line[name] = value
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Log to standard error as JSON lines (``fmt`` "json") or as text for a terminal ("text")."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
