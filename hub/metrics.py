"""Prometheus metrics: the conventional grpc_server_* families and the hub's own.

Labels carry participant ids, record types, outcomes and reasons: never
personal data. The registry is passed in, so tests and several hubs in one
process do not collide; nothing is registered at import time.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import gzip_accepted
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class HubMetrics:
    """Every metric the hub exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.source_failures = Counter(
            "spehub_metrics_source_failures_total",
            "Computations of gauges read from the store that failed, by source (the log names the "
            "source and the error's type).",
            ["source"],
            registry=registry,
        )


Families = dict[str, tuple[str, list[str], list[tuple[list[str], float]]]]
"""Gauge families by name: (help, label names, [(label values, value)])."""


def _families(families: Families) -> Iterator[GaugeMetricFamily]:
    for name, (help_text, labels, samples) in families.items():
        family = GaugeMetricFamily(name, help_text, labels=labels)
        for values, value in samples:
            family.add_metric(values, value)
        yield family


class _Fixed(Collector):
    def __init__(self, families: Families) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from _families(self.families)


def watch_fixed(metrics: HubMetrics, families: Families) -> None:
    """Register gauges whose values are known at start (certificate expiry dates)."""
    metrics.registry.register(_Fixed(families))


@dataclass(frozen=True)
class GaugeSource:
    """Gauges computed from the store: ``name`` is their ``source`` label; they are computed again
    ``interval`` seconds after the last computation ended."""

    name: str
    interval: float
    compute: Callable[[], Families]


@dataclass
class _Last:
    text: bytes = b""  # the families in the text exposition format
    at: float | None = None  # when they were computed (GaugeRefresher.now)
    up: bool | None = None  # whether the last computation succeeded (None: not tried yet)
    seconds: float | None = None  # how long the last successful computation took
    shown: bool = True  # False while another process computes them


def render(families: Families) -> bytes:
    """``families`` in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


class GaugeRefresher(Collector):
    """Computes the gauges read from the store in the background, a thread per source, and serves
    their last values at each scrape, with their age: a scrape reads memory only (counting the pool
    took half a second at a million candidates, and the corridor statistics 22 s, inside the request).
    Each computation is also formatted there (``rendered``): formatting 2,300 corridor cells took
    13 ms of prometheus_client's time, at every scrape. As a collector, it gives the sources' ages.

    Where several processes share the database, the one that ``elected`` says leads computes them
    (hub.store.leader); the others export none of them, so that they are not computed, or summed,
    once per process. A computation that fails is logged (the error's type only: its message may
    hold a database URL), counted in ``spehub_metrics_source_failures_total``, and leaves the last
    values and their growing age in place; it never stops the thread or fails a scrape.
    Started and stopped with the hub (hub.bootstrap.Hub)."""

    def __init__(
        self,
        sources: list[GaugeSource],
        failures: Counter,
        elected: Callable[[], bool] = lambda: True,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = {s.name: s for s in sources}
        self.failures = failures
        self.elected = elected
        self.now = now
        self._lock = threading.Lock()
        self._last = {s.name: _Last() for s in sources}
        self._busy = {s.name: threading.Lock() for s in sources}  # one computation of a source at a time
        self._leading: bool | None = None
        self._started = now()
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []
        """The threads computing the sources (started by ``start``)."""

    def start(self) -> None:
        """Compute every source now and then every ``interval``, each on a thread of its own."""
        self._started = self.now()
        for source in self.sources.values():
            thread = threading.Thread(
                target=self._loop, args=(source,), name=f"gauges-{source.name}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def stop(self, wait: float = 1.0) -> None:
        """Stop the threads; a computation under way is left to end on its own (daemon threads)."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def refresh(self, *names: str) -> None:
        """Compute these sources (all by default) now, on this thread."""
        for name in names or tuple(self.sources):
            self._compute(self.sources[name])

    def _loop(self, source: GaugeSource) -> None:
        while not self._stop.is_set():
            self._compute(source)
            self._stop.wait(source.interval)

    def _compute(self, source: GaugeSource) -> None:
        with self._busy[source.name]:
            started = self.now()
            try:
                leading = self.elected()
                text = render(source.compute()) if leading else b""
            except Exception as exc:  # a failing source is reported by its gauges, never raised
                if self._stop.is_set():
                    return  # the hub is stopping and closed the store under a computation: no fault
                log.warning("metrics source %s failed: %s", source.name, type(exc).__name__)
                self.failures.labels(source=source.name).inc()
                with self._lock:
                    self._last[source.name].up = False
                    self._last[source.name].shown = True
                return
            with self._lock:
                self._leading = leading
                if leading:
                    self._last[source.name] = _Last(text, self.now(), True, self.now() - started)
                else:
                    self._last[source.name] = _Last(shown=False)

    def rendered(self) -> bytes:
        """The last values of the sources this process computes, in the text exposition format."""
        with self._lock:
            return b"".join(state.text for _, state in sorted(self._last.items()) if state.shown)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The sources' ages and states (their values: ``rendered``)."""
        with self._lock:
            last = {name: state for name, state in self._last.items() if state.shown}
            leading = self._leading
        now = self.now()
        up = GaugeMetricFamily(
            "spehub_metrics_source_up",
            "1 if the last computation of the source's gauges succeeded, 0 if it failed.",
            labels=["source"],
        )
        age = GaugeMetricFamily(
            "spehub_metrics_source_age_seconds",
            "Seconds since the source's gauges were last computed (since the hub started, before "
            "the first time).",
            labels=["source"],
        )
        seconds = GaugeMetricFamily(
            "spehub_metrics_source_duration_seconds",
            "How long the last successful computation of the source's gauges took.",
            labels=["source"],
        )
        interval = GaugeMetricFamily(
            "spehub_metrics_source_interval_seconds",
            "Seconds between the end of one computation of the source's gauges and the next.",
            labels=["source"],
        )
        for name, state in sorted(last.items()):
            if state.up is not None:
                up.add_metric([name], 1.0 if state.up else 0.0)
            age.add_metric([name], max(0.0, now - (self._started if state.at is None else state.at)))
            if state.seconds is not None:
                seconds.add_metric([name], state.seconds)
            interval.add_metric([name], self.sources[name].interval)
        yield from (up, age, seconds, interval)
        leader = GaugeMetricFamily(
            "spehub_metrics_leader",
            "1 if this process computes the gauges read from the store (one process per database), "
            "0 if another does.",
        )
        if leading is not None:
            leader.add_metric([], 1.0 if leading else 0.0)
        yield leader


def exposition(registry: CollectorRegistry, gauges: GaugeRefresher | None = None) -> bytes:
    """What /metrics serves: the registry's metrics, then the last values ``gauges`` computed."""
    return generate_latest(registry) + (gauges.rendered() if gauges is not None else b"")


def metrics_app(registry: CollectorRegistry, gauges: GaugeRefresher | None = None) -> Any:
    """The WSGI application of /metrics (text format 0.0.4, gzip when the scraper accepts it, as
    prometheus_client's own), with the gauges' pre-formatted values after the registry's."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = exposition(registry, gauges)
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=1)  # level 9 took 4 ms for 300 KB, level 1 about 1
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app
