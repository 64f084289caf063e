"""Object-level rules, keys over time, revocation taking effect at once, limits and deadlines."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from spehub.v1 import delivery_pb2, directory_pb2, directory_pb2_grpc, envelope_pb2, exchange_pb2, pool_pb2

from hub.domain import signing
from hub.domain.records import PayloadKind
from tests.support.hubs import make_participant, raw_channel, started_hub
from tests.support.records import demo_consent, demo_offer, demo_profile

SN, ML, FT, SE, OP = "sn-anpej", "ml-anpe", "fr-francetravail", "se-arbetsformedlingen", "op-hub"
PROFILE, OFFER, CONSENT = (
    envelope_pb2.PAYLOAD_TYPE_CANDIDATE_PROFILE,
    envelope_pb2.PAYLOAD_TYPE_JOB_OFFER,
    envelope_pb2.PAYLOAD_TYPE_CONSENT,
)


def _get(p, origin, ptype, record_id):
    return p.exchange.GetRecord(
        exchange_pb2.GetRecordRequest(origin_participant_id=origin, payload_type=ptype, record_id=record_id),
        timeout=10,
    )


def _not_found(call) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    return err.value.details()


@pytest.fixture
def published(hub, connect):
    """SN: a consent naming FR, one profile under it; FT: an offer to SN."""
    sn, ft = connect(SN), connect(FT)
    now = sn.clock()
    results = sn.publish_one_batch(
        [
            sn.seal(demo_consent(SN, "c-1", 1, now, ("FR",)), PayloadKind.CONSENT),
            sn.seal(demo_profile(SN, "p-1", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE),
        ]
    )
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in results)
    ft.publish_one_batch([ft.seal(demo_offer(FT, "o-1", 1, now, ("SN",)), PayloadKind.JOB_OFFER)])
    return sn, ft


def test_get_record_follows_visibility_and_hides_existence(published, connect):
    sn, ft = published
    assert _get(sn, SN, PROFILE, "p-1").envelope.signer_participant_id == SN  # the origin
    assert _get(ft, SN, PROFILE, "p-1").envelope.signer_participant_id == SN  # named by the consent
    assert _get(sn, FT, OFFER, "o-1").envelope.signer_participant_id == FT  # offers are open
    se = connect(SE)
    hidden = _not_found(lambda: _get(se, SN, PROFILE, "p-1"))
    absent = _not_found(lambda: _get(se, SN, PROFILE, "p-nope"))
    assert hidden.replace("p-1", "X") == absent.replace("p-nope", "X")  # same answer, nothing told apart
    _not_found(lambda: _get(ft, SN, CONSENT, "c-1"))  # consents stay with their origin
    assert _get(sn, SN, CONSENT, "c-1").envelope.payload


def test_only_the_origin_withdraws_and_recipients_are_told(published, connect):
    sn, ft = published
    ml = connect(ML)
    _not_found(
        lambda: sn.exchange.WithdrawRecord(
            exchange_pb2.WithdrawRecordRequest(payload_type=OFFER, record_id="o-1"), timeout=10
        )
    )
    _not_found(
        lambda: ml.exchange.WithdrawRecord(
            exchange_pb2.WithdrawRecordRequest(payload_type=OFFER, record_id="o-1"), timeout=10
        )
    )
    first = ft.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=OFFER, record_id="o-1"), timeout=10
    )
    again = ft.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=OFFER, record_id="o-1"), timeout=10
    )
    assert first.withdrawn_at == again.withdrawn_at
    assert sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10).offers == []
    _not_found(lambda: _get(sn, FT, OFFER, "o-1"))
    deliveries = [
        r.delivery
        for r in sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
    ]
    assert [d.kind for d in deliveries] == [
        delivery_pb2.DELIVERY_KIND_RECORD,
        delivery_pb2.DELIVERY_KIND_WITHDRAWAL,
    ]
    assert deliveries[1].withdrawn.record_id == "o-1" and not deliveries[1].HasField("envelope")


def test_withdrawn_consent_hides_its_profiles(published, connect):
    sn, ft = published
    sn.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=CONSENT, record_id="c-1"), timeout=10
    )
    assert ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10).profiles == []
    _not_found(lambda: _get(ft, SN, PROFILE, "p-1"))


def test_destination_agency_may_not_publish_candidate_records(hub, connect):
    ft = connect(FT)
    (result,) = ft.publish_one_batch(
        [ft.seal(demo_profile(FT, "p-ft", "c-1", 1, ft.clock()), PayloadKind.CANDIDATE_PROFILE)]
    )
    assert exchange_pb2.RejectionReason.Name(result.reason) == "REJECTION_REASON_TYPE_NOT_ALLOWED"
    assert result.code == grpc.StatusCode.PERMISSION_DENIED.value[0]


def _new_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, pem, signing.public_key_pem(key.public_key())


def test_rotated_out_key_verifies_its_past_and_nothing_after(hub, connect, clock):
    sn = connect(SN)
    before = clock() - timedelta(seconds=10)
    clock.advance(seconds=1)
    _, new_pem, new_public = _new_key()
    hub.admin.rotate_key(SN, "sn-anpej-2", new_public)
    old_before = sn.seal(
        demo_profile(SN, "p-old", "c-1", 1, before), PayloadKind.CANDIDATE_PROFILE, at=before
    )
    old_after = sn.seal(demo_profile(SN, "p-late", "c-1", 1, clock()), PayloadKind.CANDIDATE_PROFILE)
    sn.key_pem, sn.key_id = new_pem, "sn-anpej-2"
    new = sn.seal(demo_profile(SN, "p-new", "c-1", 1, clock()), PayloadKind.CANDIDATE_PROFILE)
    results = sn.publish_one_batch([old_before, old_after, new])
    assert [exchange_pb2.RecordOutcome.Name(r.outcome) for r in results] == [
        "RECORD_OUTCOME_ACCEPTED",
        "RECORD_OUTCOME_REJECTED",
        "RECORD_OUTCOME_ACCEPTED",
    ]
    assert exchange_pb2.RejectionReason.Name(results[1].reason) == "REJECTION_REASON_KEY_NOT_VALID"


def _admin_call(hub, test_pki, method: str, request):
    channel = raw_channel(hub.port, test_pki, OP)
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    token = stub.IssueToken(directory_pb2.IssueTokenRequest(scopes=["admin"]), timeout=10).access_token
    try:
        return getattr(stub, method)(request, metadata=[("authorization", f"Bearer {token}")], timeout=10)
    finally:
        channel.close()


def test_revoked_key_is_refused_from_the_moment_of_revocation(hub, connect, test_pki):
    sn = connect(SN)
    signed_before = sn.seal(demo_profile(SN, "p-1", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    revoked = _admin_call(
        hub,
        test_pki,
        "RevokeSigningKey",
        directory_pb2.RevokeSigningKeyRequest(participant_id=SN, key_id=sn.key_id),
    )
    assert revoked.signing_key.HasField("revoked_at")
    (result,) = sn.publish_one_batch([signed_before])
    assert exchange_pb2.RejectionReason.Name(result.reason) == "REJECTION_REASON_KEY_REVOKED"
    with hub.store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 0


def test_revoked_certificate_is_refused_on_the_next_call(hub, connect, test_pki):
    sn = connect(SN)
    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
    cert = x509.load_pem_x509_certificate((test_pki.participant_dir(SN) / "client.pem").read_bytes())
    sha = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    _admin_call(
        hub, test_pki, "RevokeCertificate", directory_pb2.RevokeCertificateRequest(certificate_sha256=sha)
    )
    with pytest.raises(grpc.RpcError) as err:
        sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.value.details()
    connect(ML).pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)  # others unaffected


def test_suspension_applies_on_the_next_call_and_can_be_lifted(hub, connect, test_pki):
    sn = connect(SN)
    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)  # holds a valid token from here
    _admin_call(
        hub,
        test_pki,
        "SetParticipantStatus",
        directory_pb2.SetParticipantStatusRequest(
            participant_id=SN, status=directory_pb2.PARTICIPANT_STATUS_SUSPENDED
        ),
    )
    with pytest.raises(grpc.RpcError) as err:
        sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    _admin_call(
        hub,
        test_pki,
        "SetParticipantStatus",
        directory_pb2.SetParticipantStatusRequest(
            participant_id=SN, status=directory_pb2.PARTICIPANT_STATUS_ACTIVE
        ),
    )
    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)


@pytest.fixture
def tight_hub(test_pki, database_url, clock):
    with started_hub(
        test_pki,
        database_url,
        clock,
        rate_limit_per_second=0.01,
        rate_limit_burst=5,
        max_streams_per_participant=2,
    ) as hub:
        yield hub


def test_a_flood_is_refused_while_others_are_served(tight_hub, test_pki, clock):
    sn = make_participant(tight_hub.port, test_pki, SN, clock)
    ft = make_participant(tight_hub.port, test_pki, FT, clock)
    codes, hints = [], []
    for _ in range(30):  # bounded: 30 calls on loopback
        try:
            sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            hints.append(dict(exc.trailing_metadata() or ()).get("retry-after-ms"))
            assert "retry after" in exc.details()
    # The refill (one request per 100 s) is far slower than the test: exactly the burst of 5
    # passes, and the client's own IssueToken call was the first of the five.
    assert codes.count(grpc.StatusCode.OK) == 4
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all(h and int(h) > 0 for h in hints)
    ft.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)  # another participant is still served
    sn.channel.close()
    ft.channel.close()


def test_open_streams_per_participant_are_capped(tight_hub, test_pki, clock):
    sn = make_participant(tight_hub.port, test_pki, SN, clock)
    streams = [sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=20) for _ in range(2)]
    for s in streams:
        s.initial_metadata()  # wait until each is open on the server
    with pytest.raises(grpc.RpcError) as err:
        next(iter(sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=5)))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "open streams" in err.value.details()
    for s in streams:
        s.cancel()
    sn.channel.close()


def test_deadline_is_honoured_and_the_server_stays_up(hub, connect):
    sn = connect(SN)
    with pytest.raises(grpc.RpcError) as err:
        list(sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=0.5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    sn.pool.SearchOffers(pool_pb2.SearchOffersRequest(), timeout=10)
