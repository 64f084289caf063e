"""What the store takes and hands back: records to store, filters, and typed rows.

Plain data, so that the services and the API work with them without knowing how they are kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from hub.domain import matching
from hub.domain.envelopes import Envelope
from hub.domain.records import ParsedRecord


@dataclass(frozen=True)
class NewRecord:
    """A verified, validated record to store as the new current version."""

    envelope: Envelope
    parsed: ParsedRecord
    stored_payload: bytes | None = None
    """What is written instead of the clear payload (sealed with the candidate's data key)."""
    digest: bytes | None = None
    """Duplicate-detection digest of the clear payload (keyed, for sealed records)."""

    @cached_property
    def sha256(self) -> bytes:
        return self.digest if self.digest is not None else hashlib.sha256(self.envelope.payload).digest()


@dataclass(frozen=True)
class StoredEnvelope:
    """An envelope as stored: the exact bytes received, with their signature."""

    id: int
    payload_type: int
    origin_id: str
    record_id: str
    version: int
    payload: bytes
    signer_id: str
    key_id: str
    signature: bytes
    signed_at_seconds: int
    signed_at_nanos: int


@dataclass(frozen=True)
class ProfileFilter:
    """Search filters over the profile index (AND between fields, OR inside one)."""

    isco08_prefixes: tuple[str, ...] = ()
    languages: tuple[tuple[str, int], ...] = ()
    destination_country: str = ""
    mobility_mask: int = 0
    available_by: date | None = None
    origin_countries: tuple[str, ...] = ()
    record_pk: int | None = None
    """Only this record (GetRecord asks whether one profile is visible)."""


@dataclass(frozen=True)
class OfferFilter:
    """Search filters over the offer index."""

    isco08_prefixes: tuple[str, ...] = ()
    work_country: str = ""
    mobility_types: tuple[int, ...] = ()
    target_country: str = ""
    open_on: date | None = None


@dataclass(frozen=True)
class Audience:
    """Who is asking and for what: a profile is visible only under a consent that allows it."""

    participant_id: str
    country_code: str
    purpose_bit: int
    active_status: int
    now_us: int


@dataclass(frozen=True)
class RankingState:
    """What a kept match ranking of an offer covers."""

    offer_revision: int
    """The offer's envelope id when ranked."""
    watermark: int
    """Profiles whose current envelope is at or below it were ranked; later ones were not."""
    boundary: tuple[int, int] | None
    """(score, profile pk) of the last candidate kept; None when every candidate was kept."""


MatchRow = tuple[matching.Candidate, str, str, str, int]
"""A ranked candidate: (matching facts, origin id, residence country, consent record id, score)."""


@dataclass(frozen=True)
class CycleRow:
    """A mobility cycle as stored."""

    id: int
    origin_id: str
    application_id: str
    profile_record_id: str
    offer_origin_id: str
    offer_record_id: str
    origin_country: str
    destination_country: str
    mobility_type: int
    isco08_code: str
    consent_record_id: str
    state: int
    updated_at_us: int


@dataclass(frozen=True)
class DeliveryRow:
    """One routed envelope in a recipient's sequence."""

    seq: int
    kind: int
    routed_at_us: int
    envelope: StoredEnvelope


@dataclass(frozen=True)
class IndexedOffer:
    """An offer's searchable facts, as indexed when its current version was stored."""

    record_pk: int
    isco08_code: str
    work_country: str
    mobility_type: int
    start_date: date | None
    deadline: date | None


@dataclass(frozen=True)
class IndexedProfile:
    """A profile's searchable facts, as indexed when its current version was stored."""

    record_pk: int
    origin_id: str
    residence_country: str
    consent_record_id: str
    mobility_mask: int
    available_from: date | None


@dataclass(frozen=True)
class StoredKey:
    """A signing key as registered (the PEM is parsed by whoever uses it)."""

    participant_id: str
    key_id: str
    public_key_pem: str
    not_before_us: int
    not_after_us: int | None
    revoked_at_us: int | None
    development: bool = False  # marked development where it came from
