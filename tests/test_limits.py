"""Lists, page tokens and encodings at their limits: refused with INVALID_ARGUMENT and the field."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor
from spehub.v1 import (
    consent_pb2,
    directory_pb2,
    directory_pb2_grpc,
    exchange_pb2,
    mobility_pb2,
    offer_pb2,
    pool_pb2,
    profile_pb2,
)

from hub.domain import caps, records
from hub.domain.records import PayloadKind, Reason, RecordRejection
from tests.support.records import demo_offer, demo_profile

ROOT = Path(__file__).resolve().parent.parent
SN, FT = "sn-anpej", "fr-francetravail"
RECORD_TYPES = (
    profile_pb2.CandidateProfile,
    profile_pb2.PersonalDetails,
    offer_pb2.JobOffer,
    consent_pb2.Consent,
    mobility_pb2.MobilityEvent,
)
MODULES = (directory_pb2, exchange_pb2, pool_pb2, mobility_pb2)


def _request_types() -> list[Descriptor]:
    from spehub.v1 import audit_pb2, delivery_pb2

    return [
        d
        for module in (*MODULES, audit_pb2, delivery_pb2)
        for name, d in module.DESCRIPTOR.message_types_by_name.items()
        if name.endswith("Request")
    ]


def _nested(descriptor: Descriptor, seen: set[str]) -> list[Descriptor]:
    out = []
    for field in descriptor.fields:
        sub = field.message_type
        if sub is not None and sub.full_name.startswith("spehub.") and sub.full_name not in seen:
            seen.add(sub.full_name)
            out += [sub, *_nested(sub, seen)]
    return out


def test_every_list_of_every_request_and_record_has_a_cap():
    tops = [*_request_types(), *(t.DESCRIPTOR for t in RECORD_TYPES)]
    missing = [
        f.full_name
        for d in tops
        for f in d.fields
        if f.is_repeated and f.full_name not in caps.LIST_CAPS and f.full_name not in caps.CAPPED_BY_SETTING
    ]
    assert missing == []
    # caps.oversized looks at the top level only: the messages nested in them must hold no list
    # (PublishRequest's envelopes carry their records as bytes, checked when each is parsed).
    nested_lists = [
        f.full_name
        for d in tops
        if d.full_name != "spehub.v1.PublishRequest"
        for sub in _nested(d, set())
        for f in sub.fields
        if f.is_repeated
    ]
    assert nested_lists == []


def test_docs_list_every_cap():
    text = (ROOT / "docs" / "limits.md").read_text()
    documented = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"\| `(spehub\.v1\.[\w.]+)` \| (\d+) \|", text)
    }
    assert documented == caps.LIST_CAPS


def test_an_offer_with_1500_required_languages_is_refused_with_its_field(hub, connect):
    ft = connect(FT)
    offer = demo_offer(FT, "o-babel", 1, ft.clock(), targets=("SN",))
    offer.required_languages.extend(
        offer.required_languages[0] for _ in range(1499)
    )  # 1,500 in all: the ranking query could not be built
    (result,) = ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)])
    assert exchange_pb2.RejectionReason.Name(result.reason) == "REJECTION_REASON_INVALID_FIELD"
    assert result.field == "required_languages"
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "1500" in result.message and "at most 10" in result.message


@pytest.mark.parametrize(
    ("field", "cap"), [("skills", 200), ("occupations", 10), ("desired_country_codes", 60)]
)
def test_a_profile_list_one_past_its_cap_is_refused_and_at_its_cap_accepted(field, cap):
    profile = demo_profile(SN, "p-long", "c-1", 1, _now())
    template = getattr(profile, field)[0]
    getattr(profile, field).extend(template for _ in range(cap - len(getattr(profile, field))))
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.SerializeToString())  # at the cap: fine
    getattr(profile, field).append(template)
    with pytest.raises(RecordRejection) as err:
        records.parse(PayloadKind.CANDIDATE_PROFILE, profile.SerializeToString())
    assert (err.value.reason, err.value.field) == (Reason.INVALID_FIELD, field)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0)


def test_a_search_with_5000_isco_prefixes_is_invalid_not_unavailable(hub, connect):
    with pytest.raises(grpc.RpcError) as err:
        connect(FT).pool.SearchProfiles(
            pool_pb2.SearchProfilesRequest(isco08_codes=[f"{i % 10000:04d}" for i in range(5000)]), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "isco08_codes holds 5000 items" in err.value.details()


def test_too_many_scopes_in_a_token_request_are_invalid(hub, test_pki):
    from tests.support.hubs import raw_channel

    with raw_channel(hub.port, test_pki, SN) as channel, pytest.raises(grpc.RpcError) as err:
        directory_pb2_grpc.DirectoryServiceStub(channel).IssueToken(
            directory_pb2.IssueTokenRequest(scopes=["search"] * 17), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scopes" in err.value.details()


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token", ["p:99999999999999999999999", "p:-1", f"p:{2**63}"], ids=["huge", "negative", "just-past-int64"]
)
def test_a_page_token_out_of_range_is_invalid(hub, connect, token):
    with pytest.raises(grpc.RpcError) as err:
        connect(FT).pool.SearchProfiles(pool_pb2.SearchProfilesRequest(page_token=_token(token)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in err.value.details()


def test_a_match_page_token_out_of_range_is_invalid(hub, connect):
    ft = connect(FT)
    offer = demo_offer(FT, "o-1", 1, ft.clock(), targets=("SN",))
    ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)])
    with pytest.raises(grpc.RpcError) as err:
        ft.pool.MatchCandidates(
            pool_pb2.MatchCandidatesRequest(
                offer_record_id="o-1", page_token=_token("m:1000:99999999999999999999")
            ),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_payload_with_its_fields_reordered_is_not_canonical():
    """Same fields, same length, another order: canonical means equal to its own deterministic
    re-serialisation, not merely as long."""
    profile = demo_profile(SN, "p-order", "c-1", 1, _now())
    header_only = profile_pb2.CandidateProfile(header=profile.header)
    rest = profile_pb2.CandidateProfile()
    rest.CopyFrom(profile)
    rest.ClearField("header")
    reordered = rest.SerializeToString() + header_only.SerializeToString()
    assert len(reordered) == len(profile.SerializeToString())
    assert profile_pb2.CandidateProfile.FromString(reordered) == profile  # the same record to a parser
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.SerializeToString())
    with pytest.raises(RecordRejection) as err:
        records.parse(PayloadKind.CANDIDATE_PROFILE, reordered)
    assert err.value.reason is Reason.MALFORMED_PAYLOAD
    assert "canonically" in err.value.message
