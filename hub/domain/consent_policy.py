"""Consent rules that depend on the law of the origin and the destination.

- Validity: a consent without ``valid_until`` lasts the policy's default; none
  may last more than its maximum (both from settings).
- Transfer bases (DESIGN: facts checked for the partnership):
  * Tunisia (INPDP), Benin (APDP) and Cameroon require the data-protection
    authority's authorisation for any transfer abroad: such recipients need
    TRANSFER_BASIS_DPA_AUTHORISATION with its reference.
  * Morocco (CNDP) requires it for destinations not on its list of countries
    with adequate protection (taken here as the EU/EEA states).
  * An EU/EEA public authority cannot rely on the person's explicit consent
    as its transfer basis (GDPR art. 49(3)): explicit consent is refused as
    the basis when the origin is in the EU/EEA.
- Dates: a consent cannot start, nor have been collected, later than its
  publication plus FUTURE_SKEW (a date in the future is a mistake in the
  export, not a consent anyone gave yet).
- What a consent covers is fixed by its evidence: a new version may narrow
  its recipients and purposes at any time, but widens them only with new
  evidence (another notice version, collection date or evidence reference),
  never by re-signing the same evidence with more in it (``widening``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from spehub.v1 import consent_pb2

from hub.domain.records import ConsentIndex, purpose_bit

# How far after the moment of publication a consent's valid_from or evidence date may be: clocks
# and time zones differ by hours, never by days.
FUTURE_SKEW = timedelta(days=1)

EU_EEA = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    ]
)
DPA_FOR_ANY_EXPORT = frozenset({"TN", "BJ", "CM"})
MOROCCO_ADEQUATE = EU_EEA


def transfer_problem(origin_country: str, recipient_country: str, basis: int) -> str | None:
    """Why ``basis`` cannot carry a transfer from ``origin_country`` to ``recipient_country``, or None."""
    if recipient_country == origin_country:
        return None
    dpa = consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION
    if origin_country in DPA_FOR_ANY_EXPORT and basis != dpa:
        return f"transfers from {origin_country} need the data-protection authority's authorisation (DPA_AUTHORISATION)"
    if origin_country == "MA" and recipient_country not in MOROCCO_ADEQUATE and basis != dpa:
        return f"transfers from MA to {recipient_country} need the CNDP's authorisation (DPA_AUTHORISATION)"
    if origin_country in EU_EEA and basis == consent_pb2.TRANSFER_BASIS_EXPLICIT_CONSENT:
        return (
            "an EU/EEA public authority cannot use explicit consent as its transfer basis (GDPR art. 49(3))"
        )
    return None


def future_date_problem(idx: ConsentIndex, now: datetime) -> tuple[str, str] | None:
    """(field path, why) when the consent starts or was collected after ``now`` + FUTURE_SKEW."""
    limit = now + FUTURE_SKEW
    for field, when in (("valid_from", idx.valid_from), ("evidence.collected_at", idx.evidence_at)):
        if when is not None and when > limit:
            return field, (
                f"is {(when - now).days} day(s) after the time of publication; a consent cannot be "
                f"dated more than {FUTURE_SKEW.days} day(s) ahead: publish it when it is given"
            )
    return None


def widening(before: ConsentIndex, after: ConsentIndex) -> tuple[str, str] | None:
    """(field path, what is added) when ``after``, a new version of the consent ``before``, names a
    recipient or grants a purpose ``before`` did not, on the same evidence: the same notice
    versions, the same collection date and the same evidence reference; or makes a withdrawn
    consent valid again on that evidence. None when it widens nothing (narrowing, pausing and
    withdrawing always pass) or rests on new evidence.

    Recipients compare as named: a participant named where only its country was is a widening
    too (a contact release needs the participant named)."""
    new_evidence = (
        {v for _, v in after.grants} != {v for _, v in before.grants}
        or after.evidence_at != before.evidence_at
        or after.evidence_reference != before.evidence_reference
    )
    if new_evidence:
        return None
    withdrawn = consent_pb2.CONSENT_STATUS_WITHDRAWN
    if before.status == withdrawn and after.status != withdrawn:
        # A withdrawal gives up everything: what the person withdrew comes back only with a
        # consent they give again (a pause, by contrast, is lifted on the same evidence).
        return "status", "makes a withdrawn consent valid again"
    for i, (participant, country, _basis) in enumerate(after.recipient_bases):
        if participant and participant not in before.recipient_participants:
            return f"recipients[{i}].participant_id", f"adds the recipient {participant!r}"
        if country and country not in before.recipient_countries:
            return f"recipients[{i}].country_code", f"adds the recipient country {country}"
    for i, (purpose, _version) in enumerate(after.grants):
        if not before.purpose_mask & purpose_bit(purpose):
            name = consent_pb2.Purpose.Name(consent_pb2.Purpose.ValueType(purpose)).removeprefix("PURPOSE_")
            return f"purposes[{i}].purpose", f"adds the purpose {name}"
    return None
