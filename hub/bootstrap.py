"""The composition root: builds every part from the settings and wires them together.

Nothing else constructs the store, the directory, the metrics or the
services; tests call ``build_hub`` with their own settings, clock and registry.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from prometheus_client import CollectorRegistry

from hub import pki
from hub.api.identity import Authenticator
from hub.api.server import ConnectionLimits, RunningServer, TlsMaterial, start_server
from hub.api.servicers import (
    AuditServicer,
    DeliveryServicer,
    DirectoryServicer,
    ExchangeServicer,
    MobilityServicer,
    PoolServicer,
)
from hub.clock import Clock, system_clock, to_us
from hub.config import DEV_PKI_DIR, Settings, load_master_key
from hub.domain import codes
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Directory
from hub.domain.tokens import HubKeyRing, TokenService
from hub.errors import ConfigError, HubError
from hub.metrics import GaugeRefresher, GaugeSource, HubMetrics, metrics_app, watch_fixed
from hub.services.audit import AuditService
from hub.services.delivery import DeliveryNotifier, DeliveryService
from hub.services.directory import DirectoryAdmin, DirectoryProvider
from hub.services.exchange import ExchangeService, SignatureVerifier
from hub.services.limits import ParticipantLimits
from hub.services.matching import MatchService, Rankings, RankingWorker
from hub.services.mobility import MobilityReader
from hub.services.operations import (
    StatisticsKeeper,
    certificate_gauges,
    deletion_gauges,
    store_gauges,
)
from hub.services.pool import PoolService
from hub.services.privacy import Sealer
from hub.services.records import RecordService
from hub.services.statistics import corridor_gauges
from hub.store.engine import Store
from hub.store.keystore import KeyStore
from hub.store.leader import Leadership

log = logging.getLogger("spehub")


WAKE_SETTLE_SECONDS = 11.0
"""How long the planner-statistics check waits, once woken by writes, for PostgreSQL to publish the
writers' change counters: a backend publishes them at the end of a transaction at most once a
second (PGSTAT_MIN_INTERVAL), else when it has been idle for 10 s (PGSTAT_IDLE_INTERVAL, PostgreSQL
15's pgstat.c). A check 2 s after a load found nothing when the same connection had published just
before it (the metrics gauges, computed at start, made that the rule), and waited an interval. SQLite
keeps no counters: its check runs at once."""


@dataclass
class Hub:
    """A running hub and everything it holds."""

    settings: Settings
    store: Store
    directory: DirectoryProvider
    admin: DirectoryAdmin
    metrics: HubMetrics
    server: RunningServer
    verifier: SignatureVerifier
    notifier: DeliveryNotifier
    keystore: KeyStore
    audit: AuditService
    sealer: Sealer | None = None
    rankings: Rankings | None = None
    ranking_worker: RankingWorker | None = None
    statistics: StatisticsKeeper | None = None
    gauges: GaugeRefresher | None = None
    """The gauges read from the store, computed in the background (``gauges.refresh()``: now)."""
    leadership: Leadership | None = None
    metrics_http: Any = None
    metrics_port: int = 0
    _stop_background: threading.Event = field(default_factory=threading.Event)

    def start_background(self) -> None:
        """Sign the head of the audit log every SPEHUB_AUDIT_CHECKPOINT_SECONDS (and once at
        shutdown); analyse the tables that changed a lot every SPEHUB_ANALYZE_SECONDS; compute the
        gauges read from the store (SPEHUB_METRICS_REFRESH_SECONDS, SPEHUB_STATISTICS_CACHE_SECONDS)."""
        if self.gauges is not None:
            self.gauges.start()
        self._every(self.settings.audit_checkpoint_seconds, self.audit.checkpoint, "audit-checkpoints")
        if self.statistics is not None and self.settings.analyze_seconds:
            wakeup = self.statistics.wakeup
            self._every(self.settings.analyze_seconds, self.statistics.refresh, "table-statistics", wakeup)

    def _every(
        self, seconds: float, work: Callable[[], object], name: str, wakeup: threading.Event | None = None
    ) -> None:
        """Run ``work`` every ``seconds`` (or as soon as ``wakeup`` is set) until the hub stops."""

        def due() -> bool:
            if wakeup is None:
                return not self._stop_background.wait(seconds)
            if wakeup.wait(seconds) and not self.store.is_sqlite:
                self._stop_background.wait(WAKE_SETTLE_SECONDS)
            return not self._stop_background.is_set()

        def loop() -> None:
            while due():
                try:
                    work()
                except HubError as exc:
                    log.warning("%s failed: %s", name, exc)

        threading.Thread(target=loop, name=name, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, end subscriptions, drain RPCs, close the store."""
        self.notifier.close()
        self.server.stop(self.settings.grace_seconds if grace is None else grace)
        self._stop_background.set()
        if self.statistics is not None:
            self.statistics.wakeup.set()
        if self.ranking_worker is not None:
            self.ranking_worker.stop()
        if self.gauges is not None:
            self.gauges.stop()
        if self.leadership is not None:
            self.leadership.close()
        try:
            self.audit.checkpoint()
        except HubError as exc:
            log.warning("final audit checkpoint failed: %s", exc)
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        self.verifier.close()
        self.keystore.close()
        self.store.close()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def load_tls(settings: Settings) -> TlsMaterial:
    """Read the TLS files named by the settings. Raises ConfigError."""
    return TlsMaterial(
        server_key=_read(settings.tls_key_file, "the hub's TLS key (SPEHUB_TLS_KEY)"),
        server_chain=_read(settings.tls_cert_file, "the hub's TLS certificate (SPEHUB_TLS_CERT)"),
        client_ca=_read(settings.client_ca_file, "the participants' CA bundle (SPEHUB_CLIENT_CA)"),
    )


def check_material(
    settings: Settings,
    tls: TlsMaterial,
    directory: Directory,
    keys: HubKeyRing,
    development: Iterable[Path] | None = None,
) -> None:
    """Refuse inconsistent material, and development material in production: marked as such
    wherever it is (``pki.development_marks``), or the same key or certificate as a file of the
    local development PKI (``development``: its folders, by default certs/dev). Raises ConfigError
    naming the setting and the mark or file, never the material."""
    if directory.trust_domain != settings.trust_domain:
        raise ConfigError(
            f"the registry's trust_domain {directory.trust_domain!r} is not SPEHUB_TRUST_DOMAIN "
            f"{settings.trust_domain!r}"
        )
    if not settings.production:
        return
    known = pki.development_material(pki.development_folders() if development is None else development)
    check_signing_keys(directory, "SPEHUB_REGISTRY", known)
    dev_keys = sorted(k for k in keys.keys if k.startswith(pki.DEV_TOKEN_KEY_PREFIX))
    if dev_keys:
        raise ConfigError(
            f"SPEHUB_TOKEN_KEYS holds development keys {dev_keys}; they are refused in production"
        )
    files: list[tuple[str, bytes]] = [
        ("SPEHUB_TLS_CERT", tls.server_chain),
        ("SPEHUB_TLS_KEY", tls.server_key),
        ("SPEHUB_CLIENT_CA", tls.client_ca),
        *(
            (f"SPEHUB_TOKEN_KEYS ({p.name})", p.read_bytes())
            for p in sorted(settings.token_keys_dir.glob("*.pem"))
        ),
    ]
    for what, data in files:
        marks = pki.development_marks(data)
        if marks:
            raise ConfigError(f"{what} is development material ({marks[0]}); it is refused in production")
    master = settings.master_key_file.read_bytes() if settings.master_key_file.is_file() else b""
    if pki.is_dev_master_key(master):
        raise ConfigError(
            "SPEHUB_MASTER_KEY_FILE is development material (it starts with the development prefix); "
            "it is refused in production"
        )
    if master:
        files.append(("SPEHUB_MASTER_KEY_FILE", master))
    for what, data in files:
        same = sorted(pki.material_fingerprints(data) & known.keys())
        if same:
            raise ConfigError(
                f"{what} is development material (the same key or certificate as {known[same[0]]}); "
                "it is refused in production"
            )


def check_signing_keys(directory: Directory, where: str, known: Mapping[str, str]) -> None:
    """For production: refuse a directory (the registry file, or the store: ``where`` names its
    setting) holding a signing key marked development, or the same key as a file of the local
    development PKI (``known``: ``pki.development_material``). Raises ConfigError."""
    if directory.development:
        raise ConfigError(f"{where}: the registry is marked development; it is refused in production")
    for k in sorted(directory.keys.values(), key=lambda k: (k.participant_id, k.key_id)):
        if k.development:
            raise ConfigError(
                f"{where}: signing key {k.key_id!r} of {k.participant_id} is marked development; "
                "it is refused in production"
            )
    for k in directory.keys.values():
        same = sorted(pki.material_fingerprints(k.public_key_pem.encode()) & known.keys())
        if same:
            raise ConfigError(
                f"{where}: signing key {k.key_id!r} of {k.participant_id} is development material "
                f"(the same key as {known[same[0]]}); it is refused in production"
            )


def check_bindable(address: str) -> None:
    """Refuse, with the reason, an address this process cannot listen on (taken by another process,
    not on this host), before grpc tries it: grpc only says that it failed. Raises ConfigError."""
    host, _, port = address.rpartition(":")
    if not codes.ascii_digits(port) or int(port) == 0:
        return  # port 0 is always free; grpc refuses a malformed address itself
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {address} (SPEHUB_LISTEN): {exc}") from exc
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc does: TIME_WAIT is no obstacle
        try:
            probe.bind(where)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {address} (SPEHUB_LISTEN): {exc.strerror}") from exc


def build_hub(
    settings: Settings, *, clock: Clock = system_clock, metrics_registry: CollectorRegistry | None = None
) -> Hub:
    """Load, check and start everything. Raises ConfigError or StoreUnavailableError.

    The registry file's participants and keys are imported into the store
    when missing there; after that the store is the directory (``spe-hub participants``).
    """
    tls = load_tls(settings)
    registry = Directory.load(settings.registry_file)
    keys = HubKeyRing.load(settings.token_keys_dir)
    check_material(settings, tls, registry, keys)
    metrics = HubMetrics(metrics_registry or CollectorRegistry())
    store = Store(settings.database_url, read_url=settings.read_database_url)
    store.create_schema()
    keystore = KeyStore(settings.keystore_url)
    sealer = Sealer(keystore, load_master_key(settings.master_key_file, settings.production))
    directory = DirectoryProvider(store, settings.trust_domain, registry.development)
    admin = DirectoryAdmin(store, directory, clock, production=settings.production)
    admin.import_registry(registry)
    if settings.production:  # the store is the directory: a development hub may have filled it
        try:
            check_signing_keys(
                directory.current(),
                "SPEHUB_DATABASE_URL",
                pki.development_material(pki.development_folders()),
            )
        except ConfigError:
            keystore.close()
            store.close()
            raise
    tokens = TokenService(
        keys, issuer=f"spiffe://{settings.trust_domain}/hub", ttl_seconds=settings.token_ttl_seconds
    )
    notifier = DeliveryNotifier()
    audit = AuditService(store, keys, clock, notifier)
    verifier = SignatureVerifier(settings.verify_threads)
    statistics = StatisticsKeeper(store, settings.analyze_seconds or 30)
    exchange = ExchangeService(
        store,
        directory,
        clock,
        metrics,
        verifier,
        notifier,
        settings.max_batch_records,
        timedelta(seconds=settings.clock_skew_seconds),
        sealer,
        timedelta(days=settings.consent_default_days),
        timedelta(days=settings.consent_max_days),
        statistics,
    )
    watch_fixed(
        metrics,
        certificate_gauges(
            {
                "hub-server": x509.load_pem_x509_certificate(tls.server_chain).not_valid_after_utc,
                "client-ca": x509.load_pem_x509_certificate(tls.client_ca).not_valid_after_utc,
            }
        ),
    )
    # Computed in the background by the one process holding the metrics lock (hub.store.leader):
    # a scrape reads memory only.
    leadership = Leadership(store.engine)
    sources = [
        GaugeSource(
            "operational_gauges", settings.metrics_refresh_seconds, store_gauges(store, directory, clock)
        ),
        GaugeSource(
            "deletion_acks_overdue",
            settings.metrics_refresh_seconds,
            deletion_gauges(store, clock, timedelta(hours=settings.deletion_ack_hours)),
        ),
    ]
    if settings.statistics_cache_seconds:
        sources.append(
            GaugeSource("corridors", settings.statistics_cache_seconds, corridor_gauges(store, clock))
        )
    gauges = GaugeRefresher(sources, metrics.source_failures, leadership.held)
    metrics.registry.register(gauges)
    rankings = Rankings(store, clock, metrics=metrics, statistics=statistics)
    ranking_worker = (
        RankingWorker(rankings, settings.match_ranking_seconds) if settings.match_ranking_seconds else None
    )
    try:
        if settings.process_index < 0:
            check_bindable(settings.listen_address)
        running = start_server(
            settings.listen_address,
            tls,
            Authenticator(directory, tokens, clock, admin.consume_token_id),
            metrics,
            ParticipantLimits(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
                settings.max_streams_per_participant,
                settings.max_waiting_calls_per_participant,
            ),
            DirectoryServicer(directory, admin, tokens, keys, clock),
            ExchangeServicer(exchange, RecordService(store, clock, notifier, sealer)),
            PoolServicer(
                PoolService(store, clock, sealer),
                clock,
                MatchService(store, clock, sealer, rankings, ranking_worker),
            ),
            DeliveryServicer(DeliveryService(store, notifier, settings.delivery_poll_seconds, clock, sealer)),
            AuditServicer(audit),
            MobilityServicer(MobilityReader(store, sealer)),
            settings.workers,
            settings.max_message_bytes,
            reuse_port=settings.process_index >= 0,
            connections=ConnectionLimits(
                settings.max_connections,
                settings.max_connections_per_address,
                settings.handshake_timeout_seconds,
                settings.connection_idle_seconds,
            ),
        )
    except (ConfigError, RuntimeError) as exc:  # RuntimeError: grpc could not bind the address
        verifier.close()
        keystore.close()
        store.close()
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"cannot listen on {settings.listen_address} (SPEHUB_LISTEN): the address is in use "
            "or not available on this host"
        ) from exc
    hub = Hub(
        settings,
        store,
        directory,
        admin,
        metrics,
        running,
        verifier,
        notifier,
        keystore,
        audit,
        sealer,
        rankings,
        ranking_worker,
        statistics,
        gauges,
        leadership,
    )
    hub.start_background()
    if ranking_worker is not None:
        ranking_worker.start()
    if settings.metrics_address:
        host, _, port = settings.metrics_address.rpartition(":")
        try:
            http = serve_metrics(host.strip("[]"), int(port), metrics.registry, gauges)
        except OSError as exc:
            hub.stop(0)
            raise ConfigError(f"cannot serve metrics on {settings.metrics_address}: {exc.strerror}") from exc
        hub.metrics_http = http
        hub.metrics_port = http.server_port
    return hub


class _MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: Prometheus calls every few seconds."""


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, gauges: GaugeRefresher | None = None
) -> WSGIServer:
    """The /metrics HTTP server on a thread of its own (hub.metrics.metrics_app: the registry, then
    the last values ``gauges`` computed), polling for shutdown every 50 ms rather than
    prometheus_client's 500: a hub stops without waiting."""
    server_class = _MetricsServer6 if ":" in host else _MetricsServer
    httpd = make_server(host, port, metrics_app(registry, gauges), server_class, handler_class=_QuietHandler)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="metrics-http"
    ).start()
    return httpd


def open_store(create_schema: bool = True) -> tuple[Settings, Store]:
    """The settings from the environment and the store they name, for the commands that work on
    the store directly (audit, db, participants, stats): the one place besides ``serve`` that reads
    SPEHUB_* and builds a Store. ``create_schema``: bring the schema to the code's revision first
    (``db`` manages revisions itself)."""
    settings = Settings.from_env(os.environ)
    store = Store(settings.database_url)
    if create_schema:
        store.create_schema()
    return settings, store


def overdue_deletions(store: Store, clock: Clock, after: timedelta) -> dict[str, int]:
    """Deletion notices not acknowledged within ``after``, per recipient."""
    with store.unit_of_work() as uow:
        return uow.deliveries.overdue(DeliveryKind.DELETION, to_us(clock() - after))


def ensure_dev_pki(settings: Settings) -> None:
    """In development with the default paths, create the dev PKI if it is missing."""
    if settings.production or settings.registry_file != DEV_PKI_DIR / "registry.json":
        return
    if not settings.registry_file.exists():
        log.warning("no PKI in %s: generating the development PKI (spe-hub dev-pki)", DEV_PKI_DIR)
        pki.generate_dev_pki(DEV_PKI_DIR)


def settle_heap() -> None:
    """Load what the hub otherwise loads on first use, then leave everything built so far out of
    the garbage collector's full passes (gc.freeze): it lives as long as the process.

    A full pass walks every object the process holds: 36-39 ms in a hub serving searches at 1M
    profiles (a gc.callbacks probe), every few seconds, on whichever call triggered it; such
    pauses were the slowest searches of a run. With the start-up objects frozen, 4-6 ms."""
    codes.is_country("FR")
    codes.is_language("fr")
    codes.is_currency("EUR")
    gc.collect()
    gc.freeze()


def serve(settings: Settings, environ: Mapping[str, str] | None = None) -> int:
    """Run the hub until SIGTERM or SIGINT, then shut down gracefully; with SPEHUB_PROCESSES above
    1, start that many serving processes on the port instead (hub.supervisor). Returns the exit
    status."""
    ensure_dev_pki(settings)
    if settings.processes > 1:
        from hub.supervisor import supervise

        return supervise(settings, os.environ if environ is None else environ)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info(
            "signal %s: shutting down (grace %.0fs)", signal.Signals(signum).name, settings.grace_seconds
        )
        stop.set()

    # Before the server starts: health reports SERVING as soon as it does, and a service manager
    # may send SIGTERM from then on. A signal during start-up stops the hub once it is built.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    hub = build_hub(settings)
    settle_heap()
    log.info(
        "SPE Hub serving on %s (port %d), env=%s, store=%s, metrics on %s",
        settings.listen_address,
        hub.port,
        settings.env,
        hub.store.engine.url.render_as_string(hide_password=True),
        f"port {hub.metrics_port}" if hub.metrics_http else "off",
    )
    stop.wait()
    hub.stop()
    log.info("stopped")
    return 0
