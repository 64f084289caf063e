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
"""

from __future__ import annotations

from spehub.v1 import consent_pb2

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
