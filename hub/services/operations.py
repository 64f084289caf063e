"""What operators watch that is not a counter: backlogs, pool size, audit checkpoint age, expiry dates.

Computed at each Prometheus scrape from the store and the directory (ids and
country codes only). Certificate expiry dates are read once, at start: a new
certificate takes a restart anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from spehub.v1 import consent_pb2

from hub.clock import Clock, to_us
from hub.domain import records
from hub.services.directory import DirectoryProvider
from hub.services.statistics import THRESHOLD
from hub.store.engine import Store

Families = dict[str, tuple[str, list[str], list[tuple[list[str], float]]]]


def operational_gauges(
    store: Store, directory: DirectoryProvider, clock: Clock, certificates: dict[str, datetime]
) -> Callable[[], Families]:
    """A source for hub.metrics.watch_gauges."""

    def collect() -> Families:
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
                "Seconds since the hub last signed the head of the audit log (0 with an empty log).",
                [],
                [([], max(0.0, (now_us - checkpoint) / 1e6) if checkpoint else 0.0)],
            ),
            "spehub_certificate_expiry_timestamp_seconds": (
                "When the hub's TLS certificates expire (Unix time).",
                ["certificate"],
                [([name], at.timestamp()) for name, at in sorted(certificates.items())],
            ),
            "spehub_signing_key_expiry_timestamp_seconds": (
                "When participants' signing keys stop being valid (Unix time; keys without an end are left out).",
                ["participant", "key_id"],
                sorted(keys),
            ),
        }

    return collect
