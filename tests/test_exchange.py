"""Publication over the real wire: every record verified, bad ones refused one by one, good ones kept."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import envelope_pb2, exchange_pb2, pool_pb2

from hub.domain.records import PayloadKind
from tests.support.records import demo_consent, demo_offer, demo_personal, demo_profile

SN = "sn-anpej"
FT = "fr-francetravail"
ACCEPTED = exchange_pb2.RECORD_OUTCOME_ACCEPTED
DUPLICATE = exchange_pb2.RECORD_OUTCOME_DUPLICATE
REJECTED = exchange_pb2.RECORD_OUTCOME_REJECTED


def _count(hub, record_id: str) -> int:
    with hub.store.unit_of_work() as uow:
        return uow.records.count_envelopes(record_id)


def _profile_env(sn, record_id="p-1", version=1, **kw):
    return sn.seal(
        demo_profile(SN, record_id, "c-1", version, sn.clock()), PayloadKind.CANDIDATE_PROFILE, **kw
    )


def _reason(result) -> str:
    return exchange_pb2.RejectionReason.Name(result.reason)


def test_happy_path_publish_search_and_delivery(hub, connect):
    sn, ft = connect(SN), connect(FT)
    now = sn.clock()
    batch = [
        sn.seal(demo_consent(SN, "c-1", 1, now), PayloadKind.CONSENT),
        _profile_env(sn, "p-1"),
        _profile_env(sn, "p-2"),
        sn.seal(demo_personal(SN, "pd-1", "p-1", "c-1", 1, now), PayloadKind.PERSONAL_DETAILS),
    ]
    results = sn.publish_one_batch(batch)
    assert [r.outcome for r in results] == [ACCEPTED] * 4
    assert [r.record_id for r in results] == ["c-1", "p-1", "p-2", "pd-1"]
    assert all(r.code == 0 for r in results)

    offer = ft.seal(demo_offer(FT, "o-1", 1, now, targets=("SN",)), PayloadKind.JOB_OFFER)
    assert ft.publish_one_batch([offer])[0].outcome == ACCEPTED

    found = ft.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(isco08_codes=["9211"]), timeout=10)
    assert sorted(h.profile.signer_participant_id for h in found.profiles) == [SN, SN]
    # The exact signed bytes come back, never re-encoded.
    assert {h.profile.payload for h in found.profiles} == {batch[1].payload, batch[2].payload}
    assert {h.profile.signature for h in found.profiles} == {batch[1].signature, batch[2].signature}

    received = list(sn.delivery.Subscribe(_drain(), timeout=10))
    assert [d.delivery.envelope.payload for d in received] == [offer.payload]
    assert received[0].delivery.envelope.signature == offer.signature


def _drain():
    from spehub.v1 import delivery_pb2

    return delivery_pb2.SubscribeRequest(stop_when_drained=True)


def test_republished_record_is_a_duplicate_and_not_stored_twice(hub, connect):
    sn = connect(SN)
    env = _profile_env(sn)
    first, second = sn.publish([env], [env])
    assert first.results[0].outcome == ACCEPTED
    assert second.results[0].outcome == DUPLICATE
    assert second.results[0].code == 0
    assert _count(hub, "p-1") == 1


def test_same_version_with_other_content_is_a_conflict(hub, connect):
    sn = connect(SN)
    assert sn.publish_one_batch([_profile_env(sn)])[0].outcome == ACCEPTED
    other = demo_profile(SN, "p-1", "c-1", 1, sn.clock())
    other.summary = "changed"
    (result,) = sn.publish_one_batch([sn.seal(other, PayloadKind.CANDIDATE_PROFILE)])
    assert (result.outcome, _reason(result)) == (REJECTED, "REJECTION_REASON_VERSION_CONFLICT")
    assert result.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert _count(hub, "p-1") == 1


def test_older_version_after_newer_is_stale_and_newer_versions_replace(hub, connect):
    sn = connect(SN)
    results = sn.publish_one_batch([_profile_env(sn, version=1), _profile_env(sn, version=3)])
    assert [r.outcome for r in results] == [ACCEPTED, ACCEPTED]
    (stale,) = sn.publish_one_batch([_profile_env(sn, version=2)])
    assert _reason(stale) == "REJECTION_REASON_STALE_VERSION"
    assert stale.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert _count(hub, "p-1") == 2


def test_versions_are_kept_per_payload_type_when_record_ids_are_shared(hub, connect):
    """A national system may number its consents and profiles alike: "x-1" is then two records,
    each with its own versions (the version lookup names the payload type)."""
    sn = connect(SN)
    now = sn.clock()
    consent = sn.seal(demo_consent(SN, "x-1", 3, now), PayloadKind.CONSENT)
    profile = sn.seal(demo_profile(SN, "x-1", "x-1", 1, now), PayloadKind.CANDIDATE_PROFILE)
    assert [r.outcome for r in sn.publish_one_batch([consent, profile])] == [ACCEPTED, ACCEPTED]
    # The profile's version 2 is newer than its own 1, though older than the consent's 3.
    newer = sn.seal(demo_profile(SN, "x-1", "x-1", 2, now), PayloadKind.CANDIDATE_PROFILE)
    older_consent = sn.seal(demo_consent(SN, "x-1", 2, now), PayloadKind.CONSENT)
    results = sn.publish_one_batch([profile, newer, older_consent])
    assert [r.outcome for r in results] == [DUPLICATE, ACCEPTED, REJECTED]
    assert _reason(results[2]) == "REJECTION_REASON_STALE_VERSION"
    assert _count(hub, "x-1") == 3


def test_bad_records_are_rejected_one_by_one_and_good_ones_kept(hub, connect):
    sn = connect(SN)
    good_a = _profile_env(sn, "good-a")
    tampered = _profile_env(sn, "tampered")
    tampered.payload = tampered.payload.replace(b"Ouvrier", b"Ouvriez")
    unknown_key = _profile_env(sn, "unknown-key", key_id="sn-anpej-nope")
    other_signer = _profile_env(sn, "other-signer", signer="ml-anpe")
    unknown_type = _profile_env(sn, "unknown-type")
    unknown_type.payload_type = 99  # type: ignore[assignment]
    unspecified = _profile_env(sn, "unspecified")
    unspecified.payload_type = envelope_pb2.PAYLOAD_TYPE_UNSPECIFIED
    malformed = sn.seal(demo_profile(SN, "x", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    malformed = _resign(sn, malformed, b"\x0a\xff\xff\xff")
    good_b = _profile_env(sn, "good-b")
    batch = [good_a, tampered, unknown_key, other_signer, unknown_type, unspecified, malformed, good_b]

    results = sn.publish_one_batch(batch)
    by_index = {r.index: r for r in results}
    assert len(results) == len(batch)
    assert by_index[0].outcome == ACCEPTED and by_index[7].outcome == ACCEPTED
    expected = {
        1: "REJECTION_REASON_SIGNATURE_INVALID",
        2: "REJECTION_REASON_UNKNOWN_KEY",
        3: "REJECTION_REASON_SIGNER_NOT_CALLER",
        4: "REJECTION_REASON_UNKNOWN_PAYLOAD_TYPE",
        5: "REJECTION_REASON_UNKNOWN_PAYLOAD_TYPE",
        6: "REJECTION_REASON_MALFORMED_PAYLOAD",
    }
    for index, reason in expected.items():
        assert by_index[index].outcome == REJECTED, index
        assert _reason(by_index[index]) == reason, index
        assert by_index[index].code in (
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            grpc.StatusCode.PERMISSION_DENIED.value[0],
        )
        assert by_index[index].message
    assert by_index[3].field == "signer_participant_id"
    assert _count(hub, "good-a") == 1 and _count(hub, "good-b") == 1
    for rid in ("tampered", "unknown-key", "other-signer", "unknown-type", "unspecified", "x"):
        assert _count(hub, rid) == 0


def _resign(p, env: envelope_pb2.SignedEnvelope, payload: bytes) -> envelope_pb2.SignedEnvelope:
    """A correctly signed envelope around arbitrary payload bytes."""
    from hub.domain import signing

    key = signing.load_private_key(p.key_pem, "test")
    kind = PayloadKind.from_payload_type(env.payload_type)
    msg = signing.signing_input(
        kind.value, env.signer_participant_id, env.key_id, env.signed_at.seconds, env.signed_at.nanos, payload
    )
    out = envelope_pb2.SignedEnvelope()
    out.CopyFrom(env)
    out.payload = payload
    out.signature = signing.sign(key, msg)
    return out


def test_the_high_s_twin_of_a_valid_signature_is_refused(hub, connect):
    """(r, n - s) verifies as ECDSA; the hub refuses it, so a record has one signature encoding."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from hub.domain import signing

    sn = connect(SN)
    env = _profile_env(sn, "high-s")
    r, s = decode_dss_signature(env.signature)
    assert not signing.high_s(env.signature)  # the client signs low S
    env.signature = encode_dss_signature(r, 2 * signing.HALF_ORDER + 1 - s)
    (result,) = sn.publish_one_batch([env])
    assert result.outcome == REJECTED
    assert _reason(result) == "REJECTION_REASON_SIGNATURE_INVALID"
    assert result.field == "signature" and "high-S" in result.message
    assert _count(hub, "high-s") == 0


def test_signed_fields_cannot_be_moved_to_another_type_or_time(hub, connect):
    sn = connect(SN)
    retyped = _profile_env(sn, "retyped")
    retyped.payload_type = envelope_pb2.PAYLOAD_TYPE_PERSONAL_DETAILS
    backdated = _profile_env(sn, "backdated")
    backdated.signed_at.seconds -= 60  # inside the key window: only the signature can catch it
    results = sn.publish_one_batch([retyped, backdated])
    assert [_reason(r) for r in results] == ["REJECTION_REASON_SIGNATURE_INVALID"] * 2


def test_origin_must_be_the_signer(hub, connect):
    sn = connect(SN)
    env = sn.seal(demo_profile("ml-anpe", "p-ml", "c-1", 1, sn.clock()), PayloadKind.CANDIDATE_PROFILE)
    (result,) = sn.publish_one_batch([env])
    assert _reason(result) == "REJECTION_REASON_ORIGIN_NOT_SIGNER"
    assert result.field == "header.origin_participant_id"


def test_unknown_field_is_refused_naming_it(hub, connect):
    sn = connect(SN)
    record = demo_profile(SN, "p-unknown", "c-1", 1, sn.clock())
    env = sn.seal(record, PayloadKind.CANDIDATE_PROFILE)
    # Field 99, varint 1, appended at the top level: valid protobuf, not in the schema.
    env = _resign(sn, env, env.payload + b"\x98\x06\x01")
    (result,) = sn.publish_one_batch([env])
    assert _reason(result) == "REJECTION_REASON_UNKNOWN_FIELD"
    assert "99" in result.message


def test_non_canonical_encoding_is_refused(hub, connect):
    sn = connect(SN)
    env = _profile_env(sn, "p-dup-field")
    # residence_country_code (field 3) repeated: parsers keep the last value.
    env = _resign(sn, env, env.payload + b"\x1a\x02ML")
    (result,) = sn.publish_one_batch([env])
    assert _reason(result) == "REJECTION_REASON_MALFORMED_PAYLOAD"
    assert "canonical" in result.message


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "residence_country_code", "XX"), "residence_country_code"),
        (lambda r: r.occupations[0].__setattr__("isco08_code", "92a"), "occupations[0].isco08_code"),
        (lambda r: r.languages[1].__setattr__("level", 0), "languages[1].level"),
        (lambda r: r.languages[0].__setattr__("language_code", "zz"), "languages[0].language_code"),
        (lambda r: r.mobility_types.append(0), "mobility_types[2]"),
        (lambda r: r.mobility_types.append(42), "mobility_types[2]"),
        (lambda r: r.header.__setattr__("record_id", "bad id!"), "header.record_id"),
        (lambda r: r.header.__setattr__("version", 0), "header.version"),
        (lambda r: r.available_from.__setattr__("month", 13), "available_from"),
        (lambda r: r.ClearField("occupations"), "occupations"),
    ],
)
def test_invalid_fields_are_named(hub, connect, mutate, field):
    sn = connect(SN)
    record = demo_profile(SN, "p-bad", "c-1", 1, sn.clock())
    mutate(record)
    (result,) = sn.publish_one_batch([sn.seal(record, PayloadKind.CANDIDATE_PROFILE)])
    assert _reason(result) == "REJECTION_REASON_INVALID_FIELD"
    assert result.field == field
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_envelope_without_signature_or_time_or_from_the_future(hub, connect, clock):
    sn = connect(SN)
    unsigned = _profile_env(sn, "a")
    unsigned.signature = b""
    untimed = _profile_env(sn, "b")
    untimed.ClearField("signed_at")
    future = _profile_env(sn, "c", at=clock() + __import__("datetime").timedelta(hours=1))
    results = sn.publish_one_batch([unsigned, untimed, future])
    assert [_reason(r) for r in results] == ["REJECTION_REASON_INVALID_ENVELOPE"] * 3
    assert [r.field for r in results] == ["signature", "signed_at", "signed_at"]


def test_key_not_valid_at_signing_time(hub, connect, clock):
    sn = connect(SN)
    env = _profile_env(sn, "old", at=clock() - __import__("datetime").timedelta(days=30))
    (result,) = sn.publish_one_batch([env])
    assert _reason(result) == "REJECTION_REASON_KEY_NOT_VALID"


def test_oversized_message_is_refused_and_the_stream_refuses_nothing_else(hub, connect):
    sn = connect(SN)
    huge = _profile_env(sn, "huge")
    huge.payload = b"\x00" * (hub.settings.max_message_bytes + 1024)
    with pytest.raises(grpc.RpcError) as err:
        sn.publish([huge])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sn.publish_one_batch([_profile_env(sn, "after")])[0].outcome == ACCEPTED


def test_batch_over_the_record_limit_is_refused_whole(test_pki, database_url, clock):
    from tests.support.hubs import make_participant, started_hub

    with started_hub(test_pki, database_url, clock, max_batch_records=2) as small:
        sn = make_participant(small.port, test_pki, SN, clock)
        batch = [_profile_env(sn, f"p-{i}") for i in range(3)]
        with pytest.raises(grpc.RpcError) as err:
            sn.publish(batch)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 2" in err.value.details()
        with small.store.unit_of_work() as uow:
            assert uow.records.count_envelopes() == 0
        # On a stream, the batches before the one over the limit are answered and kept (the next
        # batch is prepared while one is stored), and nothing after it is stored.
        requests = [
            exchange_pb2.PublishRequest(request_id=name, envelopes=envs)
            for name, envs in [
                ("first", [_profile_env(sn, f"q-{i}") for i in range(2)]),
                ("too big", [_profile_env(sn, f"r-{i}") for i in range(3)]),
                ("after", [_profile_env(sn, "s-0")]),
            ]
        ]
        answered = []
        with pytest.raises(grpc.RpcError) as err:
            for response in sn.exchange.Publish(iter(requests), timeout=30):
                answered.append((response.request_id, [r.outcome for r in response.results]))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert answered == [("first", [ACCEPTED, ACCEPTED])]
        with small.store.unit_of_work() as uow:
            assert uow.records.count_envelopes() == 2
        sn.channel.close()


def test_several_batches_on_one_stream_and_versions_in_one_batch(hub, connect):
    sn = connect(SN)
    responses = sn.publish([_profile_env(sn, "a", 1), _profile_env(sn, "a", 2)], [_profile_env(sn, "b")])
    assert [r.request_id for r in responses] == ["b0", "b1"]
    assert [r.outcome for r in responses[0].results] == [ACCEPTED, ACCEPTED]
    assert _count(hub, "a") == 2
    # Later batches are verified while earlier ones are stored: answers keep the stream's order,
    # and a version published in one batch is seen by the next.
    batches = [[_profile_env(sn, "c", v)] for v in (1, 2, 3, 4, 5)] + [[_profile_env(sn, "c", 4)]]
    responses = sn.publish(*batches)
    assert [r.request_id for r in responses] == [f"b{i}" for i in range(6)]
    assert [r.results[0].outcome for r in responses] == [ACCEPTED] * 5 + [
        exchange_pb2.RECORD_OUTCOME_DUPLICATE
    ]


def test_signed_at_nanos_round_trip(hub, connect):
    sn = connect(SN)
    env = _profile_env(sn, "nanos")
    assert isinstance(env.signed_at, Timestamp)
    assert sn.publish_one_batch([env])[0].outcome == ACCEPTED


def test_overlong_consent_recipient_is_refused_alone_and_the_batch_is_kept(hub, connect):
    """An id longer than its column must be a per-record refusal, not a failed transaction (PostgreSQL)."""
    from spehub.v1 import consent_pb2

    sn = connect(SN)
    consent = demo_consent(SN, "c-long", 1, sn.clock())
    consent.recipients.append(
        consent_pb2.Recipient(participant_id="x" * 100, transfer_basis=consent_pb2.TRANSFER_BASIS_ADEQUACY)
    )
    results = sn.publish_one_batch([sn.seal(consent, PayloadKind.CONSENT), _profile_env(sn, "kept")])
    assert _reason(results[0]) == "REJECTION_REASON_INVALID_FIELD"
    assert results[0].field == "recipients[2].participant_id"
    assert results[1].outcome == ACCEPTED
