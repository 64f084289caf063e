"""What the tests share to start real hubs and talk to them as participants (imported by tests
and by conftest.py's fixtures; tests never import one another)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry
from spehub.v1 import (
    delivery_pb2_grpc,
    envelope_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    pool_pb2_grpc,
)

from hub import pki
from hub.bootstrap import Hub, build_hub
from hub.client import authorized_channel, seal
from hub.config import Settings
from hub.domain.records import PayloadKind
from hub.domain.signing import load_private_key
from tests.support.processes import pki_env

# ../shared/samples: the publishers' files the tests read (CI has them; the project never copies them).
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
TRUST_DOMAIN = "test.spehub.invalid"
PARTICIPANTS = (
    *(p for p in pki.DEMO_PARTICIPANTS if p.id != "tn-aneti"),
    pki.DemoParticipant("tn-aneti", "TN", "origin_spe", "Tunisia - ANETI (test, suspended)"),
    pki.DemoParticipant("op-hub", "SN", "operator", "Hub operator (test)"),
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass(frozen=True)
class TestPki:
    root: Path
    ca: pki.Issued

    @property
    def ca_pem(self) -> bytes:
        return (self.root / "ca.pem").read_bytes()

    def participant_dir(self, pid: str) -> Path:
        return self.root / "participants" / pid


def production_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a production hub whose material is the PKI in ``root`` (``spe-hub dev-pki`` layout)."""
    env = {
        "SPEHUB_ENV": "production",
        **pki_env(root),
        "SPEHUB_KEYSTORE_URL": f"sqlite:///{root / 'keys.sqlite3'}",
        "SPEHUB_DATABASE_URL": "sqlite:///:memory:",
        "SPEHUB_TRUST_DOMAIN": "spehub.example.org",
        "SPEHUB_LISTEN": "127.0.0.1:0",
        "SPEHUB_METRICS_LISTEN": "",
    }
    env.update(extra)
    return env


def hub_settings(test_pki: TestPki, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "listen_address": "127.0.0.1:0",
        "metrics_address": "127.0.0.1:0",
        "database_url": database_url,
        "tls_cert_file": test_pki.root / "hub" / "server.pem",
        "tls_key_file": test_pki.root / "hub" / "server-key.pem",
        "client_ca_file": test_pki.root / "ca.pem",
        "registry_file": test_pki.root / "registry.json",
        "token_keys_dir": test_pki.root / "hub" / "token-keys",
        "master_key_file": test_pki.root / "hub" / "master.key",
        "keystore_url": f"sqlite:///{tempfile.mkdtemp(prefix='spehub-keys-')}/keys.sqlite3",
        "trust_domain": TRUST_DOMAIN,
        "workers": 16,
        "delivery_poll_seconds": 0.2,
        "grace_seconds": 1.0,
        # Tests rank offers when they choose to (hub.rankings); test_match_rankings runs the worker.
        "match_ranking_seconds": 0,
        # Every participant of the tests connects from 127.0.0.1, as behind a balancer that hides
        # addresses (docs/operations.md): no cap per address. tests/test_connection_flood.py tests it.
        "max_connections_per_address": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def started_hub(test_pki: TestPki, database_url: str, clock: FakeClock, **overrides: object) -> Iterator[Hub]:
    """A hub in this process with the tests' settings, changed by ``overrides``; stopped at the end."""
    running = build_hub(
        hub_settings(test_pki, database_url, **overrides), clock=clock, metrics_registry=CollectorRegistry()
    )
    try:
        yield running
    finally:
        running.stop(0)


@dataclass
class Participant:
    """A participant's side of the wire: its channel, stubs and signing key."""

    id: str
    channel: grpc.Channel
    key_pem: bytes
    key_id: str
    clock: FakeClock
    exchange: exchange_pb2_grpc.ExchangeServiceStub = field(init=False)
    pool: pool_pb2_grpc.PoolServiceStub = field(init=False)
    delivery: delivery_pb2_grpc.DeliveryServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.exchange = exchange_pb2_grpc.ExchangeServiceStub(self.channel)
        self.pool = pool_pb2_grpc.PoolServiceStub(self.channel)
        self.delivery = delivery_pb2_grpc.DeliveryServiceStub(self.channel)

    def seal(self, record: object, kind: PayloadKind, **overrides: object) -> envelope_pb2.SignedEnvelope:
        key = load_private_key(self.key_pem, "test")
        signer = str(overrides.get("signer", self.id))
        key_id = str(overrides.get("key_id", self.key_id))
        at = overrides.get("at", self.clock())
        return seal(record, kind, signer, key_id, key, at)  # type: ignore[arg-type]

    def publish(self, *batches: list[envelope_pb2.SignedEnvelope]) -> list[exchange_pb2.PublishResponse]:
        requests = [
            exchange_pb2.PublishRequest(request_id=f"b{i}", envelopes=b) for i, b in enumerate(batches)
        ]
        return list(self.exchange.Publish(iter(requests), timeout=30))

    def publish_one_batch(
        self, envelopes: list[envelope_pb2.SignedEnvelope]
    ) -> list[exchange_pb2.RecordResult]:
        (response,) = self.publish(envelopes)
        return list(response.results)


def raw_channel(port: int, test_pki: TestPki, pid: str) -> grpc.Channel:
    """A participant's mTLS channel without the token plugin: the test sets the metadata itself."""
    from hub.client import secure_channel

    folder = test_pki.participant_dir(pid)
    return secure_channel(
        f"127.0.0.1:{port}",
        test_pki.ca_pem,
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
    )


def make_participant(
    port: int, test_pki: TestPki, pid: str, clock: FakeClock, scopes: tuple[str, ...] = ()
) -> Participant:
    """A participant's client of the hub on ``port``: mTLS plus access tokens."""
    folder = test_pki.participant_dir(pid)
    channel = authorized_channel(
        f"127.0.0.1:{port}",
        test_pki.ca_pem,
        (folder / "client.pem").read_bytes(),
        (folder / "client-key.pem").read_bytes(),
        scopes,
    )
    return Participant(
        pid,
        channel,
        (folder / "signing-key.pem").read_bytes(),
        (folder / "key-id").read_text().strip(),
        clock,
    )
