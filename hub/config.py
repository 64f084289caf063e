"""Settings: one frozen, validated object built at start-up from SPEHUB_* variables.

Nothing here reads files or connects; ``Settings.from_env`` only parses and
checks the values. Development defaults run the hub with SQLite and the
development PKI in certs/dev/; ``SPEHUB_ENV=production`` requires every path
to be given explicitly and refuses development material (checked when the
files are loaded, in hub.bootstrap).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hub.errors import ConfigError

DEV_PKI_DIR = Path("certs/dev")
DEV_TRUST_DOMAIN = "dev.spehub.invalid"


@dataclass(frozen=True)
class Variable:
    """One SPEHUB_* environment variable: the setting it sets, how it is read, its bounds."""

    name: str
    field: str
    kind: str  # choice | path | text | int | number
    low: int = 0
    high: int = 0


# Every variable the hub reads (docs/configuration.md is generated from this table and the
# settings' docstrings: scripts/gen_reference.py).
VARIABLES = (
    Variable("SPEHUB_ENV", "env", "choice"),
    Variable("SPEHUB_LISTEN", "listen_address", "text"),
    Variable("SPEHUB_METRICS_LISTEN", "metrics_address", "text"),
    Variable("SPEHUB_DATABASE_URL", "database_url", "text"),
    Variable("SPEHUB_READ_DATABASE_URL", "read_database_url", "text"),
    Variable("SPEHUB_KEYSTORE_URL", "keystore_url", "text"),
    Variable("SPEHUB_TRUST_DOMAIN", "trust_domain", "text"),
    Variable("SPEHUB_TLS_CERT", "tls_cert_file", "path"),
    Variable("SPEHUB_TLS_KEY", "tls_key_file", "path"),
    Variable("SPEHUB_CLIENT_CA", "client_ca_file", "path"),
    Variable("SPEHUB_REGISTRY", "registry_file", "path"),
    Variable("SPEHUB_TOKEN_KEYS", "token_keys_dir", "path"),
    Variable("SPEHUB_MASTER_KEY_FILE", "master_key_file", "path"),
    Variable("SPEHUB_MAX_MESSAGE_BYTES", "max_message_bytes", "int", 64 * 1024, 64 * 1024 * 1024),
    Variable("SPEHUB_MAX_BATCH_RECORDS", "max_batch_records", "int", 1, 100_000),
    Variable("SPEHUB_WORKERS", "workers", "int", 4, 1024),
    Variable("SPEHUB_PROCESSES", "processes", "int", 1, 64),
    Variable("SPEHUB_PROCESS_INDEX", "process_index", "int", 0, 63),
    Variable("SPEHUB_VERIFY_THREADS", "verify_threads", "int", 1, 256),
    Variable("SPEHUB_CLOCK_SKEW_SECONDS", "clock_skew_seconds", "int", 0, 3600),
    Variable("SPEHUB_TOKEN_TTL_SECONDS", "token_ttl_seconds", "int", 30, 3600),
    Variable("SPEHUB_CONSENT_DEFAULT_DAYS", "consent_default_days", "int", 1, 3650),
    Variable("SPEHUB_CONSENT_MAX_DAYS", "consent_max_days", "int", 1, 3650),
    Variable("SPEHUB_DELETION_ACK_HOURS", "deletion_ack_hours", "int", 1, 24 * 365),
    Variable("SPEHUB_STATISTICS_CACHE_SECONDS", "statistics_cache_seconds", "int", 0, 86_400),
    Variable("SPEHUB_METRICS_REFRESH_SECONDS", "metrics_refresh_seconds", "int", 1, 3600),
    Variable("SPEHUB_MATCH_RANKING_SECONDS", "match_ranking_seconds", "int", 0, 86_400),
    Variable("SPEHUB_ANALYZE_SECONDS", "analyze_seconds", "int", 0, 86_400),
    Variable("SPEHUB_RATE_LIMIT_BURST", "rate_limit_burst", "int", 1, 100_000),
    Variable("SPEHUB_MAX_STREAMS_PER_PARTICIPANT", "max_streams_per_participant", "int", 1, 1000),
    Variable(
        "SPEHUB_MAX_WAITING_CALLS_PER_PARTICIPANT", "max_waiting_calls_per_participant", "int", 1, 10_000
    ),
    Variable("SPEHUB_MAX_CONNECTIONS", "max_connections", "int", 0, 1_000_000),
    Variable("SPEHUB_MAX_CONNECTIONS_PER_ADDRESS", "max_connections_per_address", "int", 0, 1_000_000),
    Variable("SPEHUB_HANDSHAKE_TIMEOUT_SECONDS", "handshake_timeout_seconds", "int", 1, 120),
    Variable("SPEHUB_CONNECTION_IDLE_SECONDS", "connection_idle_seconds", "int", 0, 86_400),
    Variable("SPEHUB_RATE_LIMIT_PER_SECOND", "rate_limit_per_second", "number", 1, 1_000_000),
    Variable("SPEHUB_AUDIT_CHECKPOINT_SECONDS", "audit_checkpoint_seconds", "number", 1, 86400),
    Variable("SPEHUB_GRACE_SECONDS", "grace_seconds", "number", 0, 600),
)

_PATH_DEFAULTS = {
    "tls_cert_file": ("SPEHUB_TLS_CERT", DEV_PKI_DIR / "hub" / "server.pem"),
    "tls_key_file": ("SPEHUB_TLS_KEY", DEV_PKI_DIR / "hub" / "server-key.pem"),
    "client_ca_file": ("SPEHUB_CLIENT_CA", DEV_PKI_DIR / "ca.pem"),
    "registry_file": ("SPEHUB_REGISTRY", DEV_PKI_DIR / "registry.json"),
    "token_keys_dir": ("SPEHUB_TOKEN_KEYS", DEV_PKI_DIR / "hub" / "token-keys"),
    "master_key_file": ("SPEHUB_MASTER_KEY_FILE", DEV_PKI_DIR / "hub" / "master.key"),
}


@dataclass(frozen=True)
class Settings:
    """Everything the hub needs to start, validated."""

    env: str = "development"
    """``development`` (defaults allowed, dev PKI generated if missing) or ``production``."""
    listen_address: str = "127.0.0.1:50051"
    """host:port for gRPC; port 0 binds a free port (tests)."""
    metrics_address: str = "127.0.0.1:9464"
    """host:port of the Prometheus /metrics endpoint; empty disables it."""
    database_url: str = "sqlite:///var/spehub.sqlite3"
    """SQLAlchemy URL: a SQLite file by default, ``postgresql+psycopg://…`` in production."""
    read_database_url: str = ""
    """A PostgreSQL streaming replica of SPEHUB_DATABASE_URL for the pool's reads (search, match);
    empty: every read goes to the primary. Consent is re-checked on the primary before each
    disclosure, and the audit entries are written there (docs/scaling.md)."""
    tls_cert_file: Path = _PATH_DEFAULTS["tls_cert_file"][1]
    """PEM certificate chain of the hub's server certificate."""
    tls_key_file: Path = _PATH_DEFAULTS["tls_key_file"][1]
    """PEM private key of the hub's server certificate."""
    client_ca_file: Path = _PATH_DEFAULTS["client_ca_file"][1]
    """PEM bundle of the CAs that issue participants' client certificates."""
    registry_file: Path = _PATH_DEFAULTS["registry_file"][1]
    """JSON participant registry imported at start-up (what the store lacks is added; nothing is changed)."""
    token_keys_dir: Path = _PATH_DEFAULTS["token_keys_dir"][1]
    """Folder of the hub's own P-256 keys ``<kid>.pem`` for access tokens and directory exports;
    the lexically last signs, all verify (rotate by adding a later kid)."""
    trust_domain: str = DEV_TRUST_DOMAIN
    """Participants are identified by the URI SAN spiffe://<trust_domain>/participant/<id>."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest gRPC message accepted; larger ones get RESOURCE_EXHAUSTED."""
    max_batch_records: int = 1000
    """Most envelopes in one PublishRequest."""
    workers: int = 32
    """Threads running unary calls and the streams' store calls; idle streams hold none (grpc.aio)."""
    processes: int = 1
    """Serving processes sharing the gRPC port (SO_REUSEPORT, Linux), so that the hub's Python work
    (parsing, validating, storing) runs on every core; more than 1 needs PostgreSQL
    (docs/scaling.md). Process *i* serves its metrics on the metrics port + *i*."""
    process_index: int = -1
    """Set by ``spe-hub serve`` for each process it starts when SPEHUB_PROCESSES > 1 (not by hand):
    the process then shares the port with the others."""
    verify_threads: int = os.cpu_count() or 2
    """Threads verifying signatures (cryptography releases the GIL while verifying)."""
    clock_skew_seconds: int = 300
    """Leeway for signing times in the future."""
    grace_seconds: float = 10.0
    """How long in-flight RPCs may finish after SIGTERM."""
    master_key_file: Path = _PATH_DEFAULTS["master_key_file"][1]
    """The 32-byte master key (base64) that wraps candidates' data keys."""
    keystore_url: str = "sqlite:///var/spehub-keys.sqlite3"
    """Where candidates' data keys live: a database of their own, backed up apart (docs/consent.md)."""
    consent_default_days: int = 365
    """Validity of a consent that gives no valid_until."""
    consent_max_days: int = 730
    """Longest validity a consent may have."""
    audit_checkpoint_seconds: float = 300.0
    """How often the hub signs the head of the audit log."""
    deletion_ack_hours: int = 72
    """After how long an unacknowledged deletion notice is overdue."""
    statistics_cache_seconds: int = 300
    """How often the corridor statistics exported as metrics are counted again, in the background by
    one hub process (the seconds from the end of one count to the start of the next; the count took
    22 s at a million candidates); 0 leaves them out of the metrics (`spe-hub stats` still counts them)."""
    metrics_refresh_seconds: int = 15
    """How often the gauges read from the store (delivery backlogs, overdue deletions, pool size,
    audit checkpoint age, signing keys' ends) are computed again, in the background by one hub
    process; a scrape serves the last values (docs/operations.md, "Metrics")."""
    token_ttl_seconds: int = 300
    """Lifetime of an access token."""
    rate_limit_per_second: float = 100.0
    """Requests (calls and streamed batches) per participant per second, per hub process."""
    rate_limit_burst: int = 200
    """Requests a participant may make at once before the rate applies."""
    max_streams_per_participant: int = 8
    """Streaming calls (Publish, Subscribe) one participant may hold open at once."""
    max_waiting_calls_per_participant: int = 32
    """Unary calls of one participant (per hub process) whose headers arrived but not yet their
    request message; the next one is RESOURCE_EXHAUSTED. A client sends both together, so a call
    waits only on a slow link or when its client stalls on purpose."""
    max_connections: int = 0
    """Connections one hub process holds at once, completed or in their TLS handshake; more are
    closed as soon as they are accepted. 0: three quarters of what the process's descriptor limit
    (RLIMIT_NOFILE) leaves after 256 for files and databases, so that a flood never takes the
    descriptors the hub needs."""
    max_connections_per_address: int = 64
    """Connections one source IP address may hold to one hub process; the newest beyond it are
    closed within a second. 0: no per-address cap (a balancer in front sets it; docs/operations.md)."""
    handshake_timeout_seconds: int = 10
    """A connection that has not completed its TLS handshake and HTTP/2 preface within this time
    is closed (grpc's own default is 120 s)."""
    connection_idle_seconds: int = 600
    """A connection with no call open for this long is closed (HTTP/2 GOAWAY; a client opens a new
    one for its next call). 0: never. Open streams (Subscribe) keep their connection."""
    delivery_poll_seconds: float = 1.0
    """How often an idle Subscribe stream checks the store for deliveries made by another process."""
    match_ranking_seconds: int = 10
    """How often the hub ranks the candidates of open offers that have no ranking or a stale one
    (hub.services.matching.Rankings); 0 turns it off, and every match then scores the whole group."""
    analyze_seconds: int = 30
    """How often the hub looks for tables that changed by more than a tenth since their last
    analysis and analyses them (planner statistics after a bulk load; also before each round of
    match rankings). 0 turns the periodic check off."""

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from SPEHUB_* variables of ``environ``.

        Raises ConfigError naming the variable when a value is invalid, or
        when production mode is asked for without explicit TLS, registry and
        database settings.
        """
        env = environ.get("SPEHUB_ENV", "development")
        if env not in ("development", "production"):
            raise ConfigError(f"SPEHUB_ENV must be 'development' or 'production', not {env!r}")
        kwargs: dict[str, object] = {"env": env}
        for var in VARIABLES:
            if var.kind == "choice":
                continue
            if var.kind == "path" and not environ.get(var.name) and env == "production":
                raise ConfigError(
                    f"{var.name} must be set in production (the development PKI is refused there)"
                )
            if var.name not in environ or (var.kind == "path" and not environ[var.name]):
                continue
            if var.kind == "path":
                kwargs[var.field] = Path(environ[var.name])
            elif var.kind == "text":
                kwargs[var.field] = environ[var.name]
            elif var.kind == "int":
                kwargs[var.field] = _int(environ, var.name, var.low, var.high)
            else:  # "number": read as a whole number, kept as a float
                kwargs[var.field] = float(_int(environ, var.name, var.low, var.high))
        if env == "production":
            for name in ("SPEHUB_DATABASE_URL", "SPEHUB_TRUST_DOMAIN", "SPEHUB_KEYSTORE_URL"):
                if not environ.get(name):
                    raise ConfigError(f"{name} must be set in production")
        settings = cls(**kwargs)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check values that do not depend on files. Raises ConfigError."""
        _check_hostport(self.listen_address, "SPEHUB_LISTEN")
        if self.metrics_address:
            _check_hostport(self.metrics_address, "SPEHUB_METRICS_LISTEN")
        for var, url in (
            ("SPEHUB_DATABASE_URL", self.database_url),
            ("SPEHUB_KEYSTORE_URL", self.keystore_url),
        ):
            if not url.startswith(("sqlite://", "postgresql")):
                raise ConfigError(f"{var} must be a sqlite:// or postgresql+psycopg:// URL")
        if self.read_database_url:
            if not self.read_database_url.startswith("postgresql") or not self.database_url.startswith(
                "postgresql"
            ):
                raise ConfigError(
                    "SPEHUB_READ_DATABASE_URL is a PostgreSQL replica of a PostgreSQL SPEHUB_DATABASE_URL"
                )
            if self.read_database_url == self.database_url:
                raise ConfigError("SPEHUB_READ_DATABASE_URL must name the replica, not the primary")
        if self.processes > 1:
            if not self.database_url.startswith("postgresql"):
                raise ConfigError(
                    "SPEHUB_PROCESSES above 1 needs a PostgreSQL SPEHUB_DATABASE_URL: "
                    "SQLite has a single writer, so more processes would only queue on it"
                )
            if self.listen_address.rpartition(":")[2] == "0":
                raise ConfigError("SPEHUB_PROCESSES above 1 needs a fixed port in SPEHUB_LISTEN, not port 0")
            metrics_port = int(self.metrics_address.rpartition(":")[2] or 0)
            if metrics_port and metrics_port + self.processes - 1 > 65535:
                raise ConfigError(
                    f"SPEHUB_METRICS_LISTEN's port {metrics_port} leaves no room for the metrics ports of "
                    f"{self.processes} processes (the port + 0 to {self.processes - 1})"
                )
        if self.max_connections and self.max_connections_per_address > self.max_connections:
            raise ConfigError(
                "SPEHUB_MAX_CONNECTIONS_PER_ADDRESS must not exceed SPEHUB_MAX_CONNECTIONS "
                f"({self.max_connections_per_address} > {self.max_connections})"
            )
        if self.keystore_url == self.database_url:
            raise ConfigError(
                "SPEHUB_KEYSTORE_URL must not be the main database: erasure relies on keeping them apart"
            )
        if self.consent_default_days > self.consent_max_days:
            raise ConfigError("SPEHUB_CONSENT_DEFAULT_DAYS must not exceed SPEHUB_CONSENT_MAX_DAYS")
        if not self.trust_domain or "/" in self.trust_domain or ":" in self.trust_domain:
            raise ConfigError("SPEHUB_TRUST_DOMAIN must be a bare domain name, e.g. spehub.example.org")
        if self.production and self.trust_domain.endswith(".invalid"):
            raise ConfigError(f"SPEHUB_TRUST_DOMAIN {self.trust_domain!r} is the development trust domain")


def _int(environ: Mapping[str, str], var: str, low: int, high: int) -> int:
    text = environ[var].strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()):  # int() would take "٥" and "5_000" too
        raise ConfigError(f"{var} must be a whole number written with digits 0-9, not {environ[var]!r}")
    value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"{var} must be between {low} and {high}, not {value}")
    return value


def _check_hostport(value: str, var: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ConfigError(f"{var} must be host:port, not {value!r}")


DEV_MASTER_KEY_MARK = "# development master key - NOT FOR PRODUCTION"


def load_master_key(path: Path, production: bool) -> bytes:
    """Read the base64 master key (comment lines ignored). Raises ConfigError."""
    import base64
    import binascii

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the master key {path} (SPEHUB_MASTER_KEY_FILE): {exc.strerror}"
        ) from exc
    if production and DEV_MASTER_KEY_MARK in text:
        raise ConfigError("SPEHUB_MASTER_KEY_FILE is the development master key; it is refused in production")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        key = base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path} must hold a base64 key (SPEHUB_MASTER_KEY_FILE)") from None
    if len(key) != 32:
        raise ConfigError(f"{path} must hold 32 bytes of key, base64 encoded")
    return key
