"""What a consent covers stays what the candidate agreed to (issue 25, items 4, 6 and 10), over a
real Publish on mTLS: a new version widens recipients or purposes only on new evidence, a consent
is never dated in the future, and a withdrawn profile takes its personal view with it."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from spehub.v1 import audit_pb2, audit_pb2_grpc, consent_pb2, delivery_pb2, exchange_pb2

from hub.domain import consent_policy
from hub.domain.records import PayloadKind
from tests.support.consents import consent_for, found, publish_candidate
from tests.support.records import demo_personal, demo_profile

SN, FT, SE = "sn-anpej", "fr-francetravail", "se-arbetsformedlingen"
ACCEPTED, REJECTED = exchange_pb2.RECORD_OUTCOME_ACCEPTED, exchange_pb2.RECORD_OUTCOME_REJECTED
PERSONAL_TYPE = PayloadKind.PERSONAL_DETAILS.payload_type
PROFILE_TYPE = PayloadKind.CANDIDATE_PROFILE.payload_type


def _publish(sn, *consents):
    return sn.publish_one_batch([sn.seal(c, PayloadKind.CONSENT) for c in consents])


def _to_sweden(consent, by_participant=False):
    consent.recipients.append(
        consent_pb2.Recipient(
            participant_id=SE if by_participant else None,
            country_code=None if by_participant else "SE",
            transfer_basis=consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT,
            basis_reference="SN-SE agreement",
        )
    )
    return consent


def _refused(result, field):
    assert (result.outcome, exchange_pb2.RejectionReason.Name(result.reason), result.field) == (
        REJECTED,
        "REJECTION_REASON_INVALID_TRANSITION",
        field,
    ), result.message
    assert "c-1" not in result.message and "subject" not in result.message


def test_a_version_that_widens_on_the_same_evidence_is_refused_and_sweden_finds_nobody(hub, connect):
    sn, se = connect(SN), connect(SE)
    now = sn.clock()
    publish_candidate(sn, consent_for(SN, now))  # FR, pool search and matching
    assert found(se) == 0

    # The same evidence (notice version, collection date, reference) re-signed with more in it.
    (result,) = _publish(sn, _to_sweden(consent_for(SN, now, version=2)))
    _refused(result, "recipients[1].country_code")
    assert "SE" in result.message and "new form or notice version" in result.message
    (result,) = _publish(sn, _to_sweden(consent_for(SN, now, version=2), by_participant=True))
    _refused(result, "recipients[1].participant_id")
    more = consent_for(SN, now, version=2)
    more.purposes.add(
        purpose=consent_pb2.PURPOSE_STATISTICS, notice_version="2026-01", notice_language_code="fr"
    )
    (result,) = _publish(sn, more)
    _refused(result, "purposes[2].purpose")
    assert found(se) == 0 and found(connect(FT)) == 1  # nothing of the refused versions applies

    # Narrowing always passes, and is then what a later version is compared with, in the same
    # batch too: matching given up (v2) cannot come back on the same evidence (v3).
    narrower = consent_for(SN, now, version=2)
    del narrower.purposes[1]
    again = consent_for(SN, now, version=3)
    first, second = _publish(sn, narrower, again)
    assert first.outcome == ACCEPTED
    _refused(second, "purposes[1].purpose")


@pytest.mark.parametrize("evidence", ["notice_version", "collected_at", "reference"])
def test_new_evidence_may_widen(hub, connect, evidence):
    sn, se = connect(SN), connect(SE)
    now = sn.clock()
    publish_candidate(sn, consent_for(SN, now))
    wider = _to_sweden(consent_for(SN, now, version=2))
    if evidence == "notice_version":
        for grant in wider.purposes:
            grant.notice_version = "2026-02"
    elif evidence == "collected_at":
        wider.evidence.collected_at.FromDatetime(now)
    else:
        wider.evidence.reference = "CONS-2026-0002"
    (result,) = _publish(sn, wider)
    assert result.outcome == ACCEPTED, result.message
    assert found(se) == 1


def test_a_withdrawn_consent_is_not_made_valid_again_on_the_same_evidence(hub, connect):
    """A withdrawal gives up everything: the same evidence re-signed as active is refused, and the
    candidate stays out of the pool; a consent given again (new evidence) brings them back. A pause,
    by contrast, is lifted on the same evidence."""
    sn, ft = connect(SN), connect(FT)
    now = sn.clock()
    publish_candidate(sn, consent_for(SN, now))
    assert found(ft) == 1
    paused = consent_for(SN, now, version=2, status=consent_pb2.CONSENT_STATUS_PAUSED)
    (result,) = _publish(sn, paused)
    assert result.outcome == ACCEPTED and found(ft) == 0
    (result,) = _publish(sn, consent_for(SN, now, version=3))
    assert result.outcome == ACCEPTED and found(ft) == 1
    withdrawn = consent_for(SN, now, version=4, status=consent_pb2.CONSENT_STATUS_WITHDRAWN)
    (result,) = _publish(sn, withdrawn)
    assert result.outcome == ACCEPTED and found(ft) == 0
    (result,) = _publish(sn, consent_for(SN, now, version=5))
    _refused(result, "status")
    assert "withdrawn" in result.message and found(ft) == 0
    given_again = consent_for(SN, now, version=5)
    given_again.evidence.collected_at.FromDatetime(now)
    given_again.evidence.reference = "CONS-2026-0002"
    (result,) = _publish(sn, given_again)
    assert result.outcome == ACCEPTED, result.message
    assert found(ft) == 1


def test_widening_is_judged_by_named_recipients_and_purposes():
    def index(countries=("FR",), participants=(), purposes=(1, 2)):
        from hub.domain.records import ConsentIndex

        bases = [("", c, 2) for c in countries] + [(p, "", 2) for p in participants]
        return ConsentIndex(
            status=1,
            purpose_mask=sum(1 << p for p in purposes),
            valid_from=None,  # type: ignore[arg-type]
            valid_until=None,
            recipient_participants=tuple(participants),
            recipient_countries=tuple(countries),
            recipient_bases=tuple(bases),
            grants=tuple((p, "v1") for p in purposes),
        )

    widening = consent_policy.widening
    assert widening(index(), index(countries=())) is None  # fewer recipients
    assert widening(index(), index(purposes=(1,))) is None  # fewer purposes
    assert widening(index(), index(countries=("FR", "ES")))[0] == "recipients[1].country_code"
    # A participant of an already named country is still more: a contact release needs it named.
    assert widening(index(), index(participants=(FT,)))[0] == "recipients[1].participant_id"
    assert widening(index(participants=(FT,)), index(countries=("FR",), participants=(FT,))) is None


def test_a_consent_dated_in_the_future_is_refused(hub, connect):
    sn, se = connect(SN), connect(SE)
    now = sn.clock()
    later = consent_for(SN, now)
    later.valid_from.FromDatetime(now + timedelta(days=200))
    later.valid_until.FromDatetime(now + timedelta(days=400))
    collected_later = consent_for(SN, now)
    collected_later.header.record_id = "c-2"
    collected_later.evidence.collected_at.FromDatetime(now + timedelta(days=3))
    within_skew = consent_for(SN, now)
    within_skew.header.record_id = "c-3"
    within_skew.valid_from.FromDatetime(now + consent_policy.FUTURE_SKEW - timedelta(hours=1))
    results = _publish(sn, later, collected_later, within_skew)
    assert [(r.outcome, r.field) for r in results] == [
        (REJECTED, "valid_from"),
        (REJECTED, "evidence.collected_at"),
        (ACCEPTED, ""),
    ], [r.message for r in results]
    assert "200 day(s) after the time of publication" in results[0].message
    assert found(se) == 0


def _personal(p):
    return p.exchange.GetRecord(
        exchange_pb2.GetRecordRequest(origin_participant_id=SN, payload_type=PERSONAL_TYPE, record_id="pd-1"),
        timeout=10,
    )


def _releases(sn):
    report = audit_pb2_grpc.AuditServiceStub(sn.channel).SubjectAccessReport(
        audit_pb2.SubjectAccessReportRequest(consent_record_id="c-1"), timeout=10
    )
    return [e for e in report.entries if e.action == "release.personal"]


def test_a_withdrawn_profiles_personal_view_is_withdrawn_with_it(hub, connect):
    """The consent stays active and names France Travail for contact release; the profile is
    withdrawn. The personal view is then disclosed by no path: GetRecord (the only one that ever
    carried it: search and match return the professional view, deliveries never route it) says
    "not found", and the subject access report shows no release after the one before."""
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    assert b"Diop" in _personal(ft).envelope.payload
    assert len(_releases(sn)) == 1
    sn.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=PROFILE_TYPE, record_id="p-1"), timeout=10
    )
    with pytest.raises(grpc.RpcError) as err:
        _personal(ft)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Diop" not in err.value.details()
    assert found(ft) == 0
    assert len(_releases(sn)) == 1
    # Withdrawn with the profile, and France Travail, which received it, is told so.
    notices = [
        r.delivery
        for r in ft.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
        if r.delivery.kind == delivery_pb2.DELIVERY_KIND_WITHDRAWAL
    ]
    assert [(n.withdrawn.payload_type, n.withdrawn.record_id) for n in notices] == [(PERSONAL_TYPE, "pd-1")]
    assert not [
        r
        for r in connect(SE).delivery.Subscribe(
            delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10
        )
        if r.delivery.kind == delivery_pb2.DELIVERY_KIND_WITHDRAWAL
    ]


def test_a_personal_view_published_after_its_profile_was_withdrawn_is_not_disclosed(hub, connect):
    """The read path holds even for a personal view the withdrawal could not take with it: one
    never released, or published again after the profile was withdrawn."""
    sn, ft = connect(SN), connect(FT)
    publish_candidate(sn, consent_for(SN, sn.clock()), contact_release_for=FT)
    sn.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=PROFILE_TYPE, record_id="p-1"), timeout=10
    )
    again = demo_personal(SN, "pd-1", "p-1", "c-1", 2, sn.clock())
    (result,) = sn.publish_one_batch([sn.seal(again, PayloadKind.PERSONAL_DETAILS)])
    assert result.outcome == ACCEPTED
    with pytest.raises(grpc.RpcError) as err:
        _personal(ft)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Published again, the profile brings its personal view back for the recipient its consent names.
    profile = demo_profile(SN, "p-1", "c-1", 2, sn.clock())
    (result,) = sn.publish_one_batch([sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)])
    assert result.outcome == ACCEPTED
    assert b"Diop" in _personal(ft).envelope.payload
