"""Prometheus metrics: the conventional grpc_server_* families and the hub's own.

Labels carry participant ids, record types, outcomes and reasons: never
personal data. The registry is passed in, so tests and several hubs in one
process do not collide; nothing is registered at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class HubMetrics:
    """Every metric the hub exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sources = _SourceStatus()
        rpc = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", rpc, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            [*rpc, "grpc_code"],
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time to complete an RPC on the server (streams: whole stream).",
            rpc,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total",
            "Stream messages received by the server.",
            rpc,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "Stream messages sent by the server.", rpc, registry=registry
        )
        self.by_participant = Counter(
            "spehub_rpc_handled_total",
            "RPCs of the spehub services completed, by calling participant, method and status code.",
            ["participant", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.records = Counter(
            "spehub_records_published_total",
            "Records submitted for publication, by publishing participant, record type and outcome.",
            ["participant", "payload_type", "outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "spehub_record_rejections_total",
            "Records refused, by publishing participant and reason (signature, key, schema, version).",
            ["participant", "reason"],
            registry=registry,
        )
        self.ranking_failures = Counter(
            "spehub_match_ranking_failures_total",
            "Rankings of an open offer's candidates that failed; the offer is tried again with backoff "
            "and the others go on (the log names the offer's record).",
            registry=registry,
        )
        self.deliveries_routed = Counter(
            "spehub_deliveries_routed_total",
            "Deliveries queued for a recipient.",
            ["recipient"],
            registry=registry,
        )


class _SourceStatus:
    """Whether each scrape-time source answered at the last scrape: a source that fails (the
    database is down) must not look like "nothing overdue"; ``spehub_metrics_source_up`` says
    it, and the SpeHubMetricsSourceDown alert fires on it."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = {}

    def read(self, name: str, source: Callable[[], Any]) -> Any:
        """The source's value, or None when it failed (logged, with the error's type only)."""
        try:
            value = source()
        except Exception as exc:  # any failure of a source is reported, not raised
            log.warning("metrics source %s failed: %s", name, type(exc).__name__)
            self.up[name] = False
            return None
        self.up[name] = True
        return value


class _SourcesUp(Collector):
    """spehub_metrics_source_up{source}: registered last, so it reports this scrape's reads."""

    def __init__(self, status: _SourceStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "spehub_metrics_source_up",
            "1 if the source of scrape-time metrics answered at this scrape, 0 if it failed.",
            labels=["source"],
        )
        for name, up in sorted(self.status.up.items()):
            family.add_metric([name], 1.0 if up else 0.0)
        yield family


def watch_sources(metrics: HubMetrics) -> None:
    """Register spehub_metrics_source_up, after every watch_* collector."""
    metrics.registry.register(_SourcesUp(metrics.sources))


class _OverdueDeletions(Collector):
    """Reads, at each scrape, the deletion notices not acknowledged in time, per recipient."""

    def __init__(self, source: Callable[[], dict[str, int]], status: _SourceStatus) -> None:
        self.source = source
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "spehub_deletion_acks_overdue",
            "Deletion notices a recipient has not acknowledged within SPEHUB_DELETION_ACK_HOURS.",
            labels=["recipient"],
        )
        counts = self.status.read("deletion_acks_overdue", self.source)
        for recipient, n in sorted((counts or {}).items()):
            family.add_metric([recipient], n)
        yield family


def watch_overdue_deletions(metrics: HubMetrics, source: Callable[[], dict[str, int]]) -> None:
    metrics.registry.register(_OverdueDeletions(source, metrics.sources))


CORRIDOR_LABELS = ["kind", "origin_country", "destination_country", "mobility_type", "isco_major_group"]


class _Corridors(Collector):
    """Corridor statistics at each scrape: counts only, small cells already left out by the source."""

    def __init__(
        self, source: Callable[[], Iterable[tuple[tuple[str, ...], int]]], status: _SourceStatus
    ) -> None:
        self.source = source
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "spehub_corridor_records",
            "Profiles, offers and mobility-cycle steps by corridor, under consents that allow statistics; "
            "cells under 5 are not exported.",
            labels=CORRIDOR_LABELS,
        )
        rows = self.status.read("corridors", lambda: list(self.source()))
        for labels, n in rows or []:
            family.add_metric(list(labels), n)
        yield family


def watch_corridors(metrics: HubMetrics, source: Callable[[], Iterable[tuple[tuple[str, ...], int]]]) -> None:
    metrics.registry.register(_Corridors(source, metrics.sources))


class _Gauges(Collector):
    """Gauges read at each scrape from a source: {family name: (help, label names, [(labels, value)])}."""

    def __init__(
        self,
        source: Callable[[], dict[str, tuple[str, list[str], list[tuple[list[str], float]]]]],
        status: _SourceStatus,
    ) -> None:
        self.source = source
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self.status.read("operational_gauges", self.source)
        for name, (help_text, labels, samples) in (families or {}).items():
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            yield family


def watch_gauges(
    metrics: HubMetrics, source: Callable[[], dict[str, tuple[str, list[str], list[tuple[list[str], float]]]]]
) -> None:
    """Register gauges computed at scrape time (backlogs, pool size, ages, expiry dates)."""
    metrics.registry.register(_Gauges(source, metrics.sources))
