"""Availability under hostile load: idle streams cost no thread, and every method is counted
against the caller's certificate (a revoked or suspended one gets only health Check)."""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from spehub.v1 import delivery_pb2, delivery_pb2_grpc

from hub import pki
from hub.client import secure_channel
from tests.support.hubs import TRUST_DOMAIN, make_participant, raw_channel, started_hub
from tests.support.idle_streams import (
    pki_with_revoked_certificate,
    started_crowd,
    thread_count,
    unary_latencies,
)
from tests.support.processes import HubProcess, hub_env

SN = "sn-anpej"


def _revoke(hub, test_pki) -> grpc.Channel:
    """A second certificate of sn-anpej, revoked in the hub's directory; its channel."""
    cert = pki.issue(test_pki.ca, SN, uris=(f"spiffe://{TRUST_DOMAIN}/participant/{SN}",))
    hub.admin.revoke_certificate(hashlib.sha256(cert.cert.public_bytes(Encoding.DER)).hexdigest(), "op-hub")
    return secure_channel(f"127.0.0.1:{hub.port}", test_pki.ca_pem, cert.cert_pem, cert.key_pem)


def _watch_code(channel: grpc.Channel) -> grpc.StatusCode:
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
    try:
        next(call)
    except grpc.RpcError as exc:
        return exc.code()
    call.cancel()
    return grpc.StatusCode.OK


def _reflection_code(channel: grpc.Channel) -> grpc.StatusCode:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    try:
        list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_revoked_certificate_gets_only_the_health_check(hub, test_pki):
    with _revoke(hub, test_pki) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert _watch_code(channel) == grpc.StatusCode.UNAUTHENTICATED
        assert _reflection_code(channel) == grpc.StatusCode.UNAUTHENTICATED


def test_a_suspended_participant_gets_only_the_health_check(hub, test_pki):
    with raw_channel(hub.port, test_pki, "tn-aneti") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert _watch_code(channel) == grpc.StatusCode.PERMISSION_DENIED
        assert _reflection_code(channel) == grpc.StatusCode.PERMISSION_DENIED


def test_an_active_participant_watches_and_reflects(hub, test_pki):
    with raw_channel(hub.port, test_pki, SN) as channel:
        assert _watch_code(channel) == grpc.StatusCode.OK
        assert _reflection_code(channel) == grpc.StatusCode.OK


def test_health_watch_streams_take_the_participants_stream_slots(test_pki, database_url, clock):
    """Health Watch is a stream like Subscribe: it holds one of its caller's slots, and the
    caller's other participants are not affected."""
    with started_hub(test_pki, database_url, clock, max_streams_per_participant=2) as running:
        sn = raw_channel(running.port, test_pki, SN)
        ml = raw_channel(running.port, test_pki, "ml-anpe")
        held = [
            health_pb2_grpc.HealthStub(sn).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            for _ in range(2)
        ]
        for call in held:
            next(call)  # the current status: the stream is open and holds its slot
        assert _watch_code(sn) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _watch_code(ml) == grpc.StatusCode.OK
        for call in held:
            call.cancel()
        sn.close()
        ml.close()


def test_the_open_health_check_is_rate_limited_per_certificate(test_pki, database_url, clock):
    with (
        started_hub(test_pki, database_url, clock, rate_limit_per_second=0.01, rate_limit_burst=2) as running,
        _revoke(running, test_pki) as revoked,
        raw_channel(running.port, test_pki, "ml-anpe") as other,
    ):
        health = health_pb2_grpc.HealthStub(revoked)
        for _ in range(2):
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another certificate has its own allowance.
        health_pb2_grpc.HealthStub(other).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_a_closed_subscription_frees_its_slot(test_pki, database_url, clock):
    with started_hub(test_pki, database_url, clock, max_streams_per_participant=1) as running:
        sn = make_participant(running.port, test_pki, SN, clock)
        stub = delivery_pb2_grpc.DeliveryServiceStub(sn.channel)
        for _ in range(3):  # each one ends before the next: the one slot is free again each time
            call = stub.Subscribe(delivery_pb2.SubscribeRequest(), timeout=30)
            call.initial_metadata()
            call.cancel()
            freed = False
            for _attempt in range(50):  # the cancellation reaches the hub asynchronously
                try:
                    list(stub.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=5))
                    freed = True
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    time.sleep(0.1)
            assert freed, "the cancelled stream never gave its slot back"
        sn.channel.close()


@pytest.mark.processes
@pytest.mark.slow
def test_a_thousand_idle_streams_leave_every_participant_served(tmp_path: Path):
    """1,000 idle Subscribe and health Watch streams over the 13 participants, plus a revoked
    certificate trying more, against a real hub process with only 4 worker threads: every
    participant's unary calls are still served, and the hub does not grow a thread per stream.
    (The p99 latency is measured by bench/idle_streams.py.)"""
    root = pki_with_revoked_certificate(tmp_path / "pki", TRUST_DOMAIN)
    env = hub_env(
        root,
        f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        f"sqlite:///{tmp_path / 'keys.sqlite3'}",
        TRUST_DOMAIN,
        SPEHUB_WORKERS="4",
        SPEHUB_MAX_STREAMS_PER_PARTICIPANT="100",
    )
    hub = HubProcess.start(env, tmp_path / "hub.log", tmp_path)
    try:
        before = thread_count(hub.proc.pid)
        with started_crowd(hub.port, root, streams=1000, revoked_streams=30) as crowd:
            assert crowd["open"] >= 1000, crowd
            assert crowd["refused"] == {"UNAUTHENTICATED": 30}, crowd
            during = thread_count(hub.proc.pid)
            took, failed = unary_latencies(hub.port, root, rounds=10)
        assert not failed, failed
        assert len(took) == 130
        assert max(took) < 10
        # A thread per stream would be a thousand more; the pool and the loop are a handful.
        assert during - before < 50, (before, during)
        print(
            f"p50 {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms, threads {before}->{during}"
        )
    finally:
        assert hub.stop() == 0, hub.log.read_text()[-2000:]


def test_a_servicers_own_abort_keeps_its_status(hub, test_pki):
    """health Check of an unknown service aborts NOT_FOUND in grpcio's servicer: the interceptor
    passes that status on (and counts it) rather than calling it an internal error."""
    with raw_channel(hub.port, test_pki, SN) as channel, pytest.raises(grpc.RpcError) as err:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    labels = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}

    def handled(code: str) -> float | None:
        return hub.metrics.registry.get_sample_value(
            "grpc_server_handled_total", {**labels, "grpc_code": code}
        )

    for _ in range(50):  # the server counts the call once its handler returns, just after the client saw it
        if handled("NOT_FOUND") or handled("INTERNAL"):
            break
        time.sleep(0.05)
    assert (handled("NOT_FOUND"), handled("INTERNAL")) == (1, None)
