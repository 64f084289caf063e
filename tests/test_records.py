"""Domain rules without the wire: the signing input, signatures, and parsing of arbitrary bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain import records, signing
from hub.domain.records import PayloadKind, RecordRejection
from tests.support.records import demo_consent, demo_offer, demo_personal, demo_profile

NOW = datetime(2026, 11, 23, tzinfo=UTC)


@settings(deadline=None)
@given(
    a=st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.binary(max_size=16)),
    b=st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.binary(max_size=16)),
)
def test_signing_input_is_unambiguous(a, b):
    """Different envelope fields never give the same signed bytes (length prefixes)."""
    ia = signing.signing_input(a[0], a[1], a[2], 1, 0, a[3])
    ib = signing.signing_input(b[0], b[1], b[2], 1, 0, b[3])
    assert (ia == ib) == (a == b)


def test_signature_round_trip_and_refusals():
    key = ec.generate_private_key(ec.SECP256R1())
    msg = signing.signing_input("spehub.v1.JobOffer", "fr-x", "k1", 10, 5, b"payload")
    sig = signing.sign(key, msg)
    assert signing.verify(key.public_key(), sig, msg)
    assert not signing.verify(key.public_key(), sig, msg + b"x")
    assert not signing.verify(ec.generate_private_key(ec.SECP256R1()).public_key(), sig, msg)
    assert not signing.verify(key.public_key(), b"\x30\x00", msg)


def _twin(signature: bytes) -> bytes:
    """The other encoding (r, n - s) of an ECDSA P-256 signature: valid ECDSA for the same message."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    r, s = decode_dss_signature(signature)
    return encode_dss_signature(r, 2 * signing.HALF_ORDER + 1 - s)


def test_signing_never_gives_a_high_s_and_the_high_s_twin_is_refused():
    """Issue 25, item 7: (r, n - s) was accepted as a second valid signature of the same record."""
    from cryptography.hazmat.primitives import hashes

    for i in range(200):
        key = ec.generate_private_key(ec.SECP256R1())
        msg = signing.signing_input("spehub.v1.JobOffer", "fr-x", "k1", 10, i, b"payload %d" % i)
        sig = signing.sign(key, msg)
        assert not signing.high_s(sig), i
        assert signing.verify(key.public_key(), sig, msg)
        twin = _twin(sig)
        assert signing.high_s(twin)
        key.public_key().verify(twin, msg, ec.ECDSA(hashes.SHA256()))  # the twin is valid ECDSA ...
        assert not signing.verify(key.public_key(), twin, msg)  # ... and refused here
        assert signing.verify(key.public_key(), twin, msg, allow_high_s=True)  # a legacy reader's view


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        (PayloadKind.CANDIDATE_PROFILE, demo_profile("sn-anpej", "p-1", "c-1", 1, NOW)),
        (PayloadKind.PERSONAL_DETAILS, demo_personal("sn-anpej", "pd-1", "p-1", "c-1", 1, NOW)),
        (PayloadKind.JOB_OFFER, demo_offer("fr-francetravail", "o-1", 1, NOW)),
        (PayloadKind.CONSENT, demo_consent("sn-anpej", "c-1", 1, NOW)),
    ],
)
def test_every_kind_parses_its_own_records(kind, record):
    parsed = records.parse(kind, record.SerializeToString())
    assert (parsed.kind, parsed.record_id, parsed.version) == (kind, record.header.record_id, 1)


def test_consent_index_and_validation():
    consent = demo_consent("sn-anpej", "c-1", 1, NOW, ("FR", "SE"))
    idx = records.parse(PayloadKind.CONSENT, consent.SerializeToString()).index
    assert idx.recipient_countries == ("FR", "SE")
    consent.subject_ref = "SN-1234567"  # a national number, not a keyed hash
    with pytest.raises(RecordRejection) as err:
        records.parse(PayloadKind.CONSENT, consent.SerializeToString())
    assert err.value.field == "subject_ref"
    assert "SN-1234567" not in err.value.message


def test_personal_details_phone_must_be_e164_and_value_is_not_echoed():
    pd = demo_personal("sn-anpej", "pd-1", "p-1", "c-1", 1, NOW)
    pd.contacts[0].value = "77 000 00 00"
    with pytest.raises(RecordRejection) as err:
        records.parse(PayloadKind.PERSONAL_DETAILS, pd.SerializeToString())
    assert err.value.field == "contacts[0].value"
    assert "77 000" not in err.value.message


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(PayloadKind)), data=st.binary(max_size=512))
def test_arbitrary_bytes_are_either_a_record_or_a_rejection(kind, data):
    try:
        records.parse(kind, data)
    except RecordRejection as exc:
        assert exc.reason in records.Reason
        assert exc.message


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=0, max_value=10_000))
def test_truncated_or_flipped_profiles_never_crash(cut, flip):
    payload = bytearray(demo_profile("sn-anpej", "p-1", "c-1", 1, NOW).SerializeToString())
    payload[flip % len(payload)] ^= 0x5A
    try:
        parsed = records.parse(PayloadKind.CANDIDATE_PROFILE, bytes(payload[: cut % (len(payload) + 1)]))
    except RecordRejection as exc:
        assert exc.reason in records.Reason
    else:
        assert parsed.kind is PayloadKind.CANDIDATE_PROFILE


@pytest.mark.parametrize("seconds", [2**62, -(2**62)])
def test_out_of_range_timestamps_are_an_invalid_field(seconds):
    consent = demo_consent("sn-anpej", "c-1", 1, NOW)
    consent.valid_until.seconds = seconds
    with pytest.raises(RecordRejection) as err:
        records.parse(PayloadKind.CONSENT, consent.SerializeToString())
    assert err.value.field == "valid_until"


def test_delivery_kinds_mirror_the_schema():
    from spehub.v1 import delivery_pb2

    from hub.domain.delivery import DeliveryKind

    assert {k.name: k.value for k in DeliveryKind} == {
        name.removeprefix("DELIVERY_KIND_"): number
        for name, number in delivery_pb2.DeliveryKind.items()
        if number != 0
    }
