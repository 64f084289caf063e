"""What operators watch that is not a counter: backlogs, pool size, audit checkpoint age, expiry dates.

Computed from the store and the directory in the background, by one hub process
(hub.metrics.GaugeRefresher), and served at each Prometheus scrape with their age
(ids and country codes only). Certificate expiry dates are read once, at start:
a new certificate takes a restart anyway.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from spehub.v1 import consent_pb2

from hub.clock import Clock, to_us
from hub.domain import records
from hub.domain.delivery import DeliveryKind
from hub.metrics import Families
from hub.services.directory import DirectoryProvider
from hub.services.statistics import THRESHOLD
from hub.store.engine import Store

log = logging.getLogger("spehub")


def store_gauges(store: Store, directory: DirectoryProvider, clock: Clock) -> Callable[[], Families]:
    """The gauges read from the store and the directory (backlogs, pool size, checkpoint age,
    signing keys' ends): a GaugeSource's computation (hub.metrics.GaugeRefresher)."""

    def compute() -> Families:
        now_us = to_us(clock())
        with store.unit_of_work() as uow:
            backlog = uow.deliveries.backlogs()
            # The same rules as the corridor statistics: consent to statistics, small cells left out.
            pool = uow.pool.sizes(
                records.purpose_bit(consent_pb2.PURPOSE_STATISTICS), consent_pb2.CONSENT_STATUS_ACTIVE, now_us
            )
            checkpoint = uow.audit.last_checkpoint_us() or uow.audit.first_us()
        keys = [
            ([k.participant_id, k.key_id], k.not_after.timestamp())
            for k in directory.current().keys.values()
            if k.not_after is not None and not k.revoked
        ]
        return {
            "spehub_delivery_backlog": (
                "Deliveries routed to a recipient and not yet acknowledged.",
                ["recipient"],
                [([r], float(n)) for r, n in sorted(backlog.items())],
            ),
            "spehub_pool_profiles": (
                "Live candidate profiles in the pool whose consent allows statistics, by residence "
                f"country; countries with fewer than {THRESHOLD} are left out.",
                ["origin_country"],
                [([c], float(n)) for c, n in sorted(pool.items()) if n >= THRESHOLD],
            ),
            "spehub_audit_checkpoint_age_seconds": (
                "Seconds since the hub last signed the head of the audit log (0 with an empty log), "
                "when the gauges were computed (spehub_metrics_source_age_seconds).",
                [],
                [([], max(0.0, (now_us - checkpoint) / 1e6) if checkpoint else 0.0)],
            ),
            "spehub_signing_key_expiry_timestamp_seconds": (
                "When participants' signing keys stop being valid (Unix time; keys without an end are left out).",
                ["participant", "key_id"],
                sorted(keys),
            ),
        }

    return compute


def deletion_gauges(store: Store, clock: Clock, after: timedelta) -> Callable[[], Families]:
    """The deletion notices not acknowledged within ``after``, per recipient: a GaugeSource's
    computation."""

    def compute() -> Families:
        with store.unit_of_work() as uow:
            counts = uow.deliveries.overdue(DeliveryKind.DELETION, to_us(clock() - after))
        return {
            "spehub_deletion_acks_overdue": (
                "Deletion notices a recipient has not acknowledged within SPEHUB_DELETION_ACK_HOURS.",
                ["recipient"],
                [([r], float(n)) for r, n in sorted(counts.items())],
            )
        }

    return compute


def certificate_gauges(certificates: dict[str, datetime]) -> Families:
    """When the hub's TLS certificates expire: read once, at start (a new certificate takes a restart)."""
    return {
        "spehub_certificate_expiry_timestamp_seconds": (
            "When the hub's TLS certificates expire (Unix time).",
            ["certificate"],
            [([name], at.timestamp()) for name, at in sorted(certificates.items())],
        )
    }


STALE_SHARE = 0.1
"""A table is analysed again once more than this share of its rows changed since the last time..."""
STALE_MINIMUM = 1000
"""... plus this many rows (small tables are planned well enough on any estimate)."""


WAKE_GAP_SECONDS = 5.0
"""During a load, the check runs at most this often (on SQLite it counts every table's rows)."""


class StatisticsKeeper:
    """Keeps the planner's statistics fresh: analyses the tables that changed by more than
    STALE_SHARE of their size since their last analysis. The hub runs it every
    SPEHUB_ANALYZE_SECONDS, before each round of match rankings, and in ``db upgrade`` and
    ``db rank-offers``, so that it never depends on an operator's ANALYZE after a bulk load."""

    def __init__(
        self, store: Store, interval: float = 30.0, share: float = STALE_SHARE, minimum: int = STALE_MINIMUM
    ) -> None:
        self.store = store
        self.interval = interval
        self.share = share
        self.minimum = minimum
        self._lock = threading.Lock()
        self._last = -math.inf
        self.analysed: list[str] = []
        """The tables the last refresh analysed."""
        self._rows: dict[str, int] = {}  # SQLite: each table's size when this keeper analysed it
        self._written = 0
        self.wakeup = threading.Event()
        """Set when enough records were stored since the last refresh (``written``): the hub's
        background check runs then rather than at its next interval."""

    def refresh(self) -> list[str]:
        """Analyse the stale tables now. Returns their names. Raises StoreUnavailableError."""
        with self._lock:
            self._last = time.monotonic()
            self._written = 0
            self.wakeup.clear()
            with self.store.unit_of_work() as uow:
                stale = uow.maintenance.stale(self.share, self.minimum, self._rows)
            if stale:
                started = time.monotonic()
                # SQLite writes its statistics into a table: a write transaction.
                with self.store.unit_of_work(write=self.store.is_sqlite) as uow:
                    rows = uow.maintenance.analyze(stale)
                    uow.commit()
                self._rows.update(rows)
                log.info("analysed %d table(s) in %.1f s: %s", len(stale), time.monotonic() - started, stale)
            self.analysed = stale
            return stale

    def written(self, records: int) -> None:
        """Count records stored; past ``minimum`` since the last refresh, wake the background check,
        so that a bulk load is analysed while it goes on rather than up to an interval after."""
        self._written += records
        if self._written >= self.minimum and time.monotonic() - self._last >= WAKE_GAP_SECONDS:
            self.wakeup.set()

    def refresh_if_due(self) -> list[str]:
        """``refresh`` unless one ran in the last ``interval`` seconds."""
        if time.monotonic() - self._last < self.interval:
            return []
        return self.refresh()
