"""Consent helpers the consent and gateway tests share: a consent, a candidate under it, a search."""

from __future__ import annotations

from spehub.v1 import consent_pb2, pool_pb2

from hub.domain.records import PayloadKind
from tests.support.matching import ok
from tests.support.records import demo_consent, demo_personal, demo_profile

SN = "sn-anpej"
PERSONAL = "pd-1"  # the record id of the candidate's personal view


def consent_for(origin, now, version=1, **kw):
    consent = demo_consent(origin, "c-1", version, now, recipient_countries=("FR",))
    for key, value in kw.items():
        setattr(consent, key, value)
    return consent


def publish_candidate(sn, consent, contact_release_for: str | None = None):
    """Publish a consent, a profile and a personal view for one candidate."""
    now = sn.clock()
    if contact_release_for:
        consent.purposes.append(
            consent_pb2.PurposeGrant(
                purpose=consent_pb2.PURPOSE_CONTACT_RELEASE,
                notice_version="2026-01",
                notice_language_code="fr",
            )
        )
        consent.recipients.append(
            consent_pb2.Recipient(
                participant_id=contact_release_for,
                transfer_basis=consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT,
                basis_reference="SN-FR agreement",
            )
        )
    ok(
        sn.publish_one_batch(
            [
                sn.seal(consent, PayloadKind.CONSENT),
                sn.seal(demo_profile(SN, "p-1", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE),
                sn.seal(demo_personal(SN, PERSONAL, "p-1", "c-1", 1, now), PayloadKind.PERSONAL_DETAILS),
            ]
        )
    )


def found(p) -> int:
    return len(p.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(), timeout=10).profiles)
