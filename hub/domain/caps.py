"""How long each list in a request or a record may be: one table, enforced at validation.

A list past its cap is refused with INVALID_ARGUMENT naming the field (a request) or
INVALID_FIELD with the field path (a record of a batch). The caps bound the work one
message can cause (an offer with 1,500 required languages made the ranking query too
large for the database), far above what a real record holds. ``PublishRequest.envelopes``
is capped by SPEHUB_MAX_BATCH_RECORDS instead. docs/limits.md lists this table; a test
checks that every repeated field of every request and record type has its cap here.
"""

from __future__ import annotations

from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

LIST_CAPS: dict[str, int] = {
    # Requests
    "spehub.v1.IssueTokenRequest.scopes": 16,
    "spehub.v1.SearchProfilesRequest.isco08_codes": 50,
    "spehub.v1.SearchProfilesRequest.languages": 10,
    "spehub.v1.SearchProfilesRequest.mobility_types": 4,
    "spehub.v1.SearchProfilesRequest.origin_country_codes": 60,
    "spehub.v1.SearchOffersRequest.isco08_codes": 50,
    "spehub.v1.SearchOffersRequest.mobility_types": 4,
    # Records
    "spehub.v1.CandidateProfile.occupations": 10,
    "spehub.v1.CandidateProfile.skills": 200,
    "spehub.v1.CandidateProfile.languages": 20,
    "spehub.v1.CandidateProfile.qualifications": 50,
    "spehub.v1.CandidateProfile.work_experiences": 100,
    "spehub.v1.CandidateProfile.driving_licence_categories": 20,
    "spehub.v1.CandidateProfile.desired_country_codes": 60,
    "spehub.v1.CandidateProfile.mobility_types": 4,
    "spehub.v1.PersonalDetails.nationality_country_codes": 5,
    "spehub.v1.PersonalDetails.contacts": 20,
    "spehub.v1.PersonalDetails.other_scripts": 3,
    "spehub.v1.JobOffer.required_languages": 10,
    "spehub.v1.JobOffer.required_skills": 100,
    "spehub.v1.JobOffer.required_qualifications": 20,
    "spehub.v1.JobOffer.target_country_codes": 60,
    "spehub.v1.Consent.purposes": 10,
    "spehub.v1.Consent.recipients": 100,
    "spehub.v1.Consent.data_categories": 10,
}
# Capped elsewhere: the batch size is a setting (SPEHUB_MAX_BATCH_RECORDS).
CAPPED_BY_SETTING = frozenset({"spehub.v1.PublishRequest.envelopes"})


@cache
def _capped_fields(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, int], ...]:
    """The repeated fields of a message type with their caps, found once per type."""
    return tuple(
        (f, LIST_CAPS[f.full_name]) for f in descriptor.fields if f.is_repeated and f.full_name in LIST_CAPS
    )


def oversized(message: Message) -> tuple[str, int, int] | None:
    """The first list of ``message`` longer than its cap: (field, length, cap); None when every
    list is within its cap. (The messages nested in requests and records hold no lists; the
    test of this table would show one that did.)"""
    for field, cap in _capped_fields(message.DESCRIPTOR):
        n = len(getattr(message, field.name))
        if n > cap:
            return field.name, n, cap
    return None


def describe(found: tuple[str, int, int]) -> str:
    field, n, cap = found
    return f"{field} holds {n} items; at most {cap} are accepted (docs/limits.md)"
