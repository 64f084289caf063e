"""mTLS and identity on the real wire; health checking, reflection and the metrics endpoint."""

from __future__ import annotations

import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from spehub.v1 import directory_pb2, directory_pb2_grpc, pool_pb2, pool_pb2_grpc

from hub import pki
from tests.support.hubs import TRUST_DOMAIN


def _channel(hub, ca_pem: bytes, cert: pki.Issued | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=cert.key_pem if cert else None,
        certificate_chain=cert.cert_pem if cert else None,
    )
    return grpc.secure_channel(
        f"127.0.0.1:{hub.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def _search(channel: grpc.Channel) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        pool_pb2_grpc.PoolServiceStub(channel).SearchOffers(pool_pb2.SearchOffersRequest(), timeout=5)
    return err.value


def test_no_client_certificate_fails_the_handshake(hub, test_pki):
    with _channel(hub, test_pki.ca_pem, None) as channel:
        assert _search(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_fails_the_handshake(hub, test_pki):
    other = pki.make_ca("Somebody else's CA")
    cert = pki.issue(other, "sn-anpej", uris=(f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej",))
    with _channel(hub, test_pki.ca_pem, cert) as channel:
        assert _search(channel).code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("uris", "message"),
    [
        ((), "exactly one URI SAN"),
        (("spiffe://other.example/participant/sn-anpej",), "outside the hub's trust domain"),
        (
            (f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej", f"spiffe://{TRUST_DOMAIN}/participant/ml-anpe"),
            "exactly one URI SAN",
        ),
        ((f"spiffe://{TRUST_DOMAIN}/participant/zz-unknown",), "not registered"),
        # Issue 25, item 12: ours and another trust domain's, side by side, was accepted as ours.
        (
            (f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej", "spiffe://other.example/participant/sn-anpej"),
            "1 URI SAN(s) outside the hub's trust domain",
        ),
        (
            (f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej", "https://other.example/agent/7"),
            "1 URI SAN(s) outside the hub's trust domain",
        ),
        ((f"spiffe://{TRUST_DOMAIN}.evil.example/participant/sn-anpej",), "outside the hub's trust domain"),
        (
            (f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej", f"spiffe://{TRUST_DOMAIN}/workload/batch"),
            "exactly one URI SAN",
        ),
    ],
    ids=[
        "cn-only",
        "other-trust-domain",
        "two-identities",
        "unknown-participant",
        "ours-and-another-trust-domain",
        "ours-and-a-web-uri",
        "look-alike-trust-domain",
        "ours-and-another-of-our-domain",
    ],
)
def test_certificate_that_names_no_usable_participant_is_unauthenticated(hub, test_pki, uris, message):
    cert = pki.issue(test_pki.ca, "sn-anpej", uris=uris)
    with _channel(hub, test_pki.ca_pem, cert) as channel:
        err = _search(channel)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in err.details()


@pytest.mark.parametrize(
    "extra",
    ["spiffe://other.example/participant/sn-anpej", f"spiffe://{TRUST_DOMAIN}/participant/ml-anpe"],
    ids=["another-trust-domain", "a-second-participant"],
)
def test_a_certificate_with_a_second_uri_gets_no_token(hub, test_pki, extra):
    """IssueToken needs no token: the certificate alone must be refused (issue 25, item 12)."""
    cert = pki.issue(test_pki.ca, "sn-anpej", uris=(f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej", extra))
    with _channel(hub, test_pki.ca_pem, cert) as channel, pytest.raises(grpc.RpcError) as err:
        directory_pb2_grpc.DirectoryServiceStub(channel).IssueToken(
            directory_pb2.IssueTokenRequest(), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_suspended_participant_is_permission_denied(hub, test_pki):
    cert = pki.issue(test_pki.ca, "tn-aneti", uris=(f"spiffe://{TRUST_DOMAIN}/participant/tn-aneti",))
    with _channel(hub, test_pki.ca_pem, cert) as channel:
        err = _search(channel)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "suspended" in err.details()


def test_expired_client_certificate_fails_the_handshake(hub, test_pki):
    from datetime import UTC, datetime, timedelta

    cert = pki.issue(
        test_pki.ca,
        "sn-anpej",
        uris=(f"spiffe://{TRUST_DOMAIN}/participant/sn-anpej",),
        days=1,
        not_before=datetime.now(UTC) - timedelta(days=3),
    )
    with _channel(hub, test_pki.ca_pem, cert) as channel:
        assert _search(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_health_and_reflection(hub, test_pki, connect):
    channel = connect("sn-anpej").channel
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "spehub.v1.ExchangeService", "spehub.v1.PoolService", "spehub.v1.DeliveryService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for s in response.list_services_response.service}
    assert {"spehub.v1.ExchangeService", "spehub.v1.PoolService", "spehub.v1.DeliveryService"} <= names


def test_metrics_endpoint_exports_grpc_and_record_families(hub, connect):
    from hub.domain.records import PayloadKind
    from tests.support.records import demo_profile

    sn = connect("sn-anpej")
    good = sn.seal(demo_profile("sn-anpej", "p-1", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    bad = sn.seal(demo_profile("sn-anpej", "p-2", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    bad.signature = bad.signature[:-1] + bytes([bad.signature[-1] ^ 1])
    sn.publish_one_batch([good, bad])
    with pytest.raises(grpc.RpcError):
        sn.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(page_size=-1), timeout=5)
    # The server counts a call as handled once its status is sent: the client may see the error
    # a moment before the count moves, so the scrape waits (bounded) for the last call's line.
    last = (
        'grpc_server_handled_total{grpc_code="INVALID_ARGUMENT",grpc_method="SearchProfiles",'
        'grpc_service="spehub.v1.PoolService",grpc_type="unary"} 1.0'
    )
    for _ in range(50):
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
        )
        if last in body:
            break
        time.sleep(0.1)
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Publish",'
        'grpc_service="spehub.v1.ExchangeService",grpc_type="bidi_stream"} 1.0' in body
    )
    assert (
        'grpc_server_handled_total{grpc_code="INVALID_ARGUMENT",grpc_method="SearchProfiles",'
        'grpc_service="spehub.v1.PoolService",grpc_type="unary"} 1.0' in body
    )
    assert 'grpc_server_started_total{grpc_method="SearchProfiles"' in body
    assert "grpc_server_handling_seconds_bucket{" in body
    assert (
        'spehub_records_published_total{outcome="accepted",participant="sn-anpej",payload_type="candidate_profile"} 1.0'
        in body
    )
    assert 'spehub_record_rejections_total{participant="sn-anpej",reason="signature_invalid"} 1.0' in body
