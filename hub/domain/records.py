"""Records of the common schema: parse the verified bytes, validate, extract what the store indexes.

Each payload type has a parser that takes the exact bytes already verified
(verify, then parse), refuses non-canonical or unknown content, validates every
field, and returns the index data the store keeps beside the bytes. Errors are
RecordRejection with a reason, the field path and a message that names no
personal data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from spehub.v1 import common_pb2, consent_pb2, envelope_pb2, mobility_pb2, offer_pb2, profile_pb2

from hub.domain import caps, codes

RECORD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Directory participant ids (hub.domain.directory uses this pattern too).
PARTICIPANT_ID = re.compile(r"[a-z0-9][a-z0-9.-]{1,62}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII digits only (codes.ISCO08_UNIT says why)
HEX64 = re.compile(r"[0-9a-f]{64}")
SCRIPT = re.compile(r"[A-Z][a-z]{3}")  # ISO 15924
NACE = re.compile(r"[A-U]([0-9]{2}(\.[0-9]{1,2})?)?")  # NACE Rev. 2: section, division, group or class
MAX_TEXT = 20_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_TS_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TS_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class Reason(StrEnum):
    """Why a record is refused; mirrors spehub.v1.RejectionReason (name without prefix)."""

    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    KEY_NOT_VALID = "KEY_NOT_VALID"
    SIGNER_NOT_CALLER = "SIGNER_NOT_CALLER"
    ORIGIN_NOT_SIGNER = "ORIGIN_NOT_SIGNER"
    UNKNOWN_PAYLOAD_TYPE = "UNKNOWN_PAYLOAD_TYPE"
    MALFORMED_PAYLOAD = "MALFORMED_PAYLOAD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_FIELD = "INVALID_FIELD"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    STALE_VERSION = "STALE_VERSION"
    INVALID_ENVELOPE = "INVALID_ENVELOPE"
    KEY_REVOKED = "KEY_REVOKED"
    TYPE_NOT_ALLOWED = "TYPE_NOT_ALLOWED"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    NOT_ENTITLED = "NOT_ENTITLED"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"


class RecordRejection(Exception):
    """A record is refused. Carries the reason, the field path and an operator-facing message."""

    def __init__(self, reason: Reason, message: str, field: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


class PayloadKind(StrEnum):
    """Record types the hub stores; values are the schema's full message names."""

    CANDIDATE_PROFILE = "spehub.v1.CandidateProfile"
    PERSONAL_DETAILS = "spehub.v1.PersonalDetails"
    JOB_OFFER = "spehub.v1.JobOffer"
    CONSENT = "spehub.v1.Consent"
    MOBILITY_EVENT = "spehub.v1.MobilityEvent"

    @property
    def payload_type(self) -> int:
        """The spehub.v1.PayloadType number of this kind."""
        return _KIND_TO_TYPE[self]

    @classmethod
    def from_payload_type(cls, value: int) -> PayloadKind | None:
        """The kind for a PayloadType number, or None for UNSPECIFIED or an unknown number."""
        return _TYPE_TO_KIND.get(value)


_KIND_TO_TYPE = {
    PayloadKind.CANDIDATE_PROFILE: envelope_pb2.PAYLOAD_TYPE_CANDIDATE_PROFILE,
    PayloadKind.PERSONAL_DETAILS: envelope_pb2.PAYLOAD_TYPE_PERSONAL_DETAILS,
    PayloadKind.JOB_OFFER: envelope_pb2.PAYLOAD_TYPE_JOB_OFFER,
    PayloadKind.CONSENT: envelope_pb2.PAYLOAD_TYPE_CONSENT,
    PayloadKind.MOBILITY_EVENT: envelope_pb2.PAYLOAD_TYPE_MOBILITY_EVENT,
}
_TYPE_TO_KIND: dict[int, PayloadKind] = {v: k for k, v in _KIND_TO_TYPE.items()}


@dataclass(frozen=True)
class ProfileIndex:
    residence_country: str
    consent_record_id: str
    isco08_codes: tuple[str, ...]
    languages: tuple[tuple[str, int], ...]
    destinations: tuple[str, ...]
    mobility_mask: int
    available_from: date | None
    # For matching: skill keys (ESCO URI, or "label:" and the folded label) and months of experience.
    skills: tuple[str, ...] = ()
    experience_months: int = 0


@dataclass(frozen=True)
class OfferIndex:
    isco08_code: str
    work_country: str
    mobility_type: int
    start_date: date | None
    deadline: date | None
    target_countries: tuple[str, ...]


@dataclass(frozen=True)
class ConsentIndex:
    status: int
    purpose_mask: int
    valid_from: datetime
    valid_until: datetime | None
    recipient_participants: tuple[str, ...]
    recipient_countries: tuple[str, ...]
    # (participant id or "", country code or "", transfer basis) per recipient, for the transfer rules.
    recipient_bases: tuple[tuple[str, str, int], ...] = ()
    erasure_requested: bool = False
    # (purpose, notice version) per grant, in order; and the evidence of collection: what tells a
    # new consent from an amendment of the same one (hub.domain.consent_policy.widening).
    grants: tuple[tuple[int, str], ...] = ()
    evidence_at: datetime | None = None
    evidence_reference: str = ""


@dataclass(frozen=True)
class PersonalIndex:
    profile_record_id: str
    consent_record_id: str


@dataclass(frozen=True)
class MobilityEventIndex:
    application_origin: str
    application_id: str
    type: int
    occurred_on: date
    # APPLICATION only.
    profile_record_id: str = ""
    offer_origin: str = ""
    offer_record_id: str = ""
    reintegration_outcome: int = 0


Index = ProfileIndex | OfferIndex | ConsentIndex | PersonalIndex | MobilityEventIndex


def skill_key(skill: common_pb2.Skill) -> str:
    """How matching compares skills: the ESCO URI, else the label folded for case and spacing."""
    return skill.esco_uri or "label:" + " ".join(skill.label.casefold().split())


def experience_months(experiences: Iterable[profile_pb2.WorkExperience], today: date) -> int:
    """Months of work in the periods given (an open period runs to ``today``); overlaps count once."""
    spans = []
    for w in experiences:
        start, end = w.period.start, w.period.end
        if not start.year:
            continue
        first = start.year * 12 + start.month - 1
        last = (end.year * 12 + end.month - 1) if end.year else today.year * 12 + today.month - 1
        if last >= first:
            spans.append((first, last))
    months, reach = 0, -1
    for first, last in sorted(spans):
        if last > reach:
            months += last - max(first, reach + 1) + 1
            reach = last
    return months


@dataclass(frozen=True)
class ParsedRecord:
    """A verified record's identity and index data (the bytes stay in the envelope)."""

    kind: PayloadKind
    origin_id: str
    record_id: str
    version: int
    index: Index


def mobility_bit(mobility_type: int) -> int:
    """Bit of a MobilityType in a mobility mask."""
    return 1 << mobility_type


def purpose_bit(purpose: int) -> int:
    """Bit of a Purpose in a purpose mask."""
    return 1 << purpose


def parse(kind: PayloadKind, payload: bytes) -> ParsedRecord:
    """Parse and validate verified payload bytes as ``kind``. Raises RecordRejection."""
    message_class, validator = _PARSERS[kind]
    try:
        msg = message_class.FromString(payload)
    except DecodeError:
        raise RecordRejection(
            Reason.MALFORMED_PAYLOAD, f"payload does not parse as {kind.value}; check the payload type"
        ) from None
    # Canonical and schema-known, checked in C: once unknown fields are dropped,
    # the deterministic re-encoding must give back exactly the bytes that were
    # signed. Anything else (an unknown field, fields out of order, a repeated
    # singular field, a default written out, an unpacked list) is refused, so
    # that every parser reads the same record.
    msg.DiscardUnknownFields()
    if msg.SerializeToString(deterministic=True) != payload:
        _reject_non_canonical(message_class.FromString(payload))
    too_long = caps.oversized(msg)
    if too_long is not None:
        raise RecordRejection(Reason.INVALID_FIELD, caps.describe(too_long), too_long[0])
    header = msg.header
    record_id, origin, version = _header(header)
    index = validator(_Checker(), msg)
    return ParsedRecord(kind, origin, record_id, version, index)


def _reject_non_canonical(msg: Message) -> None:
    path = _find_unknown_field(msg, "")
    if path is not None:
        raise RecordRejection(
            Reason.UNKNOWN_FIELD,
            f"field number {path[1]} at {path[0] or 'top level'} is not in schema spehub.v1 as this hub "
            "knows it; upgrade the hub or remove the field",
            path[0],
        )
    raise RecordRejection(
        Reason.MALFORMED_PAYLOAD,
        "payload is not canonically encoded (fields out of field-number order, a field repeated, set to "
        "its default, or unpacked); serialise it with a standard protobuf library",
    )


def _find_unknown_field(msg: Message, path: str) -> tuple[str, int] | None:
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        return path, unknown[0].field_number
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        children = value if fd.is_repeated else [value]
        for i, child in enumerate(children):
            sub = f"{path}{fd.name}[{i}]." if fd.is_repeated else f"{path}{fd.name}."
            found = _find_unknown_field(child, sub)
            if found:
                return found
    return None


def _header(header: common_pb2.RecordHeader) -> tuple[str, str, int]:
    if not RECORD_ID.fullmatch(header.record_id):
        raise RecordRejection(
            Reason.INVALID_FIELD,
            "record_id must be 1 to 128 characters from [A-Za-z0-9._:-]",
            "header.record_id",
        )
    if not header.origin_participant_id:
        raise RecordRejection(
            Reason.INVALID_FIELD, "origin_participant_id is required", "header.origin_participant_id"
        )
    if header.version < 1:
        raise RecordRejection(Reason.INVALID_FIELD, "version must be 1 or more", "header.version")
    return header.record_id, header.origin_participant_id, header.version


class _Checker:
    """Field checks that raise RecordRejection(INVALID_FIELD) naming the path; never echo values."""

    def fail(self, field: str, message: str) -> NoReturn:
        raise RecordRejection(Reason.INVALID_FIELD, f"{field}: {message}", field)

    def required(self, value: Any, field: str) -> None:
        if not value:
            self.fail(field, "is required")

    def text(self, value: str, field: str, required: bool = False, limit: int = MAX_TEXT) -> None:
        if required and not value.strip():
            self.fail(field, "is required")
        if len(value) > limit:
            self.fail(field, f"is longer than {limit} characters")

    def country(self, code: str, field: str, required: bool = True) -> None:
        if not code and not required:
            return
        if not codes.is_country(code):
            self.fail(field, "must be an ISO 3166-1 alpha-2 code in upper case (e.g. 'SN')")

    def countries(self, values: Iterable[str], field: str) -> None:
        for i, code in enumerate(values):
            self.country(code, f"{field}[{i}]")

    def language(self, code: str, field: str) -> None:
        if not codes.is_language(code):
            self.fail(field, "must be an ISO 639-1 or ISO 639-3 code in lower case (e.g. 'fr', 'wol')")

    def enum(self, value: int, enum_type: Any, field: str) -> None:
        if value == 0:
            self.fail(field, f"must be set ({enum_type.DESCRIPTOR.name} UNSPECIFIED is refused)")
        if value not in enum_type.DESCRIPTOR.values_by_number:
            self.fail(field, f"value {value} is not a known {enum_type.DESCRIPTOR.name}")

    def optional_enum(self, value: int, enum_type: Any, field: str) -> None:
        if value:
            self.enum(value, enum_type, field)

    def date(self, value: common_pb2.Date, field: str, required: bool = False) -> date | None:
        if not (value.year or value.month or value.day):
            if required:
                self.fail(field, "is required")
            return None
        try:
            return date(value.year, value.month, value.day)
        except ValueError:
            self.fail(field, "is not a valid calendar date")

    def timestamp(self, msg: Message, name: str, field: str) -> datetime:
        if not msg.HasField(name):
            self.fail(field, "is required")
        ts = getattr(msg, name)
        # google.protobuf.Timestamp's valid range: 0001-01-01 to 9999-12-31.
        if not (_MIN_TS_SECONDS <= ts.seconds <= _MAX_TS_SECONDS and 0 <= ts.nanos < 1_000_000_000):
            self.fail(field, "is outside the range of google.protobuf.Timestamp")
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)

    def occupation(self, occ: common_pb2.Occupation, field: str) -> str:
        if not codes.ISCO08_PREFIX.fullmatch(occ.isco08_code):
            self.fail(
                f"{field}.isco08_code",
                "must be an ISCO-08 code of 1 to 4 ASCII digits 0-9 (a unit group, or the group the evidence "
                "supports)",
            )
        resolution = occ.resolution
        if resolution.decision:
            self.enum(resolution.decision, common_pb2.ResolutionDecision, f"{field}.resolution.decision")
            ancestor = resolution.decision == common_pb2.RESOLUTION_DECISION_ANCESTOR
            if ancestor != (len(occ.isco08_code) < 4):
                self.fail(
                    f"{field}.resolution.decision",
                    "must be ANCESTOR for a code of 1 to 3 digits and UNIT_GROUP for four digits",
                )
        if not 0.0 <= resolution.score <= 1.0:
            self.fail(f"{field}.resolution.score", "must be between 0 and 1")
        self.text(resolution.method, f"{field}.resolution.method", limit=40)
        if occ.esco_uri and not occ.esco_uri.startswith(codes.ESCO_PREFIX + "occupation/"):
            self.fail(f"{field}.esco_uri", f"must start with {codes.ESCO_PREFIX}occupation/")
        self.text(occ.title, f"{field}.title", limit=500)
        return occ.isco08_code

    def skills(self, skills: Iterable[common_pb2.Skill], field: str) -> None:
        for i, skill in enumerate(skills):
            if skill.esco_uri and not skill.esco_uri.startswith(codes.ESCO_PREFIX):
                self.fail(f"{field}[{i}].esco_uri", f"must start with {codes.ESCO_PREFIX}")
            if not skill.esco_uri and not skill.label.strip():
                self.fail(f"{field}[{i}]", "needs an esco_uri or a label")

    def languages(self, langs: Iterable[common_pb2.LanguageSkill], field: str) -> tuple[tuple[str, int], ...]:
        out = []
        for i, lang in enumerate(langs):
            self.language(lang.language_code, f"{field}[{i}].language_code")
            self.enum(lang.level, common_pb2.CefrLevel, f"{field}[{i}].level")
            out.append((lang.language_code, lang.level))
        return tuple(out)

    def qualifications(self, quals: Iterable[common_pb2.Qualification], field: str) -> None:
        for i, q in enumerate(quals):
            self.text(q.title, f"{field}[{i}].title", required=True, limit=500)
            self.optional_enum(q.eqf_level, common_pb2.EqfLevel, f"{field}[{i}].eqf_level")
            self.country(q.awarding_country_code, f"{field}[{i}].awarding_country_code", required=False)


def _profile(c: _Checker, p: profile_pb2.CandidateProfile) -> ProfileIndex:
    c.required(p.consent_record_id, "consent_record_id")
    if not RECORD_ID.fullmatch(p.consent_record_id):
        c.fail("consent_record_id", "must be a record id")
    c.country(p.residence_country_code, "residence_country_code")
    if not p.occupations:
        c.fail("occupations", "at least one occupation is required")
    isco = tuple(c.occupation(o, f"occupations[{i}]") for i, o in enumerate(p.occupations))
    c.skills(p.skills, "skills")
    langs = c.languages(p.languages, "languages")
    c.qualifications(p.qualifications, "qualifications")
    for i, w in enumerate(p.work_experiences):
        if w.HasField("occupation"):
            c.occupation(w.occupation, f"work_experiences[{i}].occupation")
        c.country(w.country_code, f"work_experiences[{i}].country_code", required=False)
        start = c.date(w.period.start, f"work_experiences[{i}].period.start")
        end = c.date(w.period.end, f"work_experiences[{i}].period.end")
        if start and end and end < start:
            c.fail(f"work_experiences[{i}].period", "ends before it starts")
        c.text(w.description, f"work_experiences[{i}].description")
        if w.nace_code and not NACE.fullmatch(w.nace_code):
            c.fail(
                f"work_experiences[{i}].nace_code",
                "must be a NACE Rev. 2 code such as F, F43 or F43.21 (ASCII digits)",
            )
    for i, cat in enumerate(p.driving_licence_categories):
        if not re.fullmatch(r"[A-Z][A-Z0-9]{0,3}", cat):
            c.fail(f"driving_licence_categories[{i}]", "must be a licence category such as 'B' or 'CE'")
    c.countries(p.desired_country_codes, "desired_country_codes")
    mask = 0
    for i, m in enumerate(p.mobility_types):
        c.enum(m, common_pb2.MobilityType, f"mobility_types[{i}]")
        mask |= mobility_bit(m)
    c.text(p.summary, "summary")
    return ProfileIndex(
        residence_country=p.residence_country_code,
        consent_record_id=p.consent_record_id,
        isco08_codes=tuple(dict.fromkeys(isco)),
        languages=langs,
        destinations=tuple(dict.fromkeys(p.desired_country_codes)),
        mobility_mask=mask,
        available_from=c.date(p.available_from, "available_from"),
        skills=tuple(dict.fromkeys(skill_key(s) for s in p.skills)),
        # Counted up to the record's own update time, so that the index does not depend on the day of import.
        experience_months=experience_months(p.work_experiences, _header_day(p.header)),
    )


def _personal(c: _Checker, p: profile_pb2.PersonalDetails) -> PersonalIndex:
    for name in ("profile_record_id", "consent_record_id"):
        if not RECORD_ID.fullmatch(getattr(p, name)):
            c.fail(name, "must be a record id")
    c.text(p.given_names, "given_names", limit=500)
    c.text(p.family_name, "family_name", required=True, limit=500)
    born = c.date(p.birth_date, "birth_date")
    if p.birth_year and (born is not None or not 1900 <= p.birth_year <= date.today().year):
        c.fail("birth_year", "a year from 1900 to this year, only when birth_date is not given")
    c.countries(p.nationality_country_codes, "nationality_country_codes")
    for i, contact in enumerate(p.contacts):
        c.enum(contact.type, profile_pb2.ContactType, f"contacts[{i}].type")
        if contact.type == profile_pb2.CONTACT_TYPE_PHONE and not E164.fullmatch(contact.value):
            c.fail(
                f"contacts[{i}].value",
                "a phone number must be in E.164 form (+ and 7 to 15 ASCII digits 0-9)",
            )
        if contact.type == profile_pb2.CONTACT_TYPE_EMAIL and not re.match(
            r"^[^@\s]+@[^@\s]+\.[^@\s]+$", contact.value
        ):
            c.fail(f"contacts[{i}].value", "is not an e-mail address")
        c.text(contact.value, f"contacts[{i}].value", required=True, limit=500)
    for i, written in enumerate(p.other_scripts):
        if not SCRIPT.fullmatch(written.script):
            c.fail(f"other_scripts[{i}].script", "must be an ISO 15924 script code such as Arab or Latn")
        c.text(written.given_names, f"other_scripts[{i}].given_names", limit=500)
        c.text(written.family_name, f"other_scripts[{i}].family_name", required=True, limit=500)
    return PersonalIndex(p.profile_record_id, p.consent_record_id)


def _offer(c: _Checker, o: offer_pb2.JobOffer) -> OfferIndex:
    c.text(o.employer.name, "employer.name", required=True, limit=500)
    c.country(o.employer.country_code, "employer.country_code")
    c.text(o.title, "title", required=True, limit=500)
    isco = c.occupation(o.occupation, "occupation")
    if len(isco) < 2:
        c.fail(
            "occupation.isco08_code",
            "an offer needs at least its ISCO-08 sub-major group (2 digits) to be matched",
        )
    if o.positions < 1:
        c.fail("positions", "must be 1 or more")
    c.country(o.place.country_code, "place.country_code")
    c.enum(o.contract.type, offer_pb2.ContractType, "contract.type")
    c.enum(o.contract.mobility_type, common_pb2.MobilityType, "contract.mobility_type")
    start = c.date(o.contract.start_date, "contract.start_date")
    w_start = c.date(o.contract.seasonal_window.start, "contract.seasonal_window.start")
    w_end = c.date(o.contract.seasonal_window.end, "contract.seasonal_window.end")
    if w_start and w_end and w_end < w_start:
        c.fail("contract.seasonal_window", "ends before it starts")
    if o.HasField("pay"):
        if o.pay.min_minor_units < 0 or o.pay.max_minor_units < o.pay.min_minor_units:
            c.fail("pay", "needs 0 <= min_minor_units <= max_minor_units")
        if not codes.is_currency(o.pay.currency_code):
            c.fail("pay.currency_code", "must be an ISO 4217 code (e.g. 'EUR')")
        c.enum(o.pay.period, common_pb2.PayPeriod, "pay.period")
    if not 0 <= o.weekly_hours <= 80:
        c.fail("weekly_hours", "must be between 0 and 80")
    c.languages(o.required_languages, "required_languages")
    c.skills(o.required_skills, "required_skills")
    c.qualifications(o.required_qualifications, "required_qualifications")
    c.countries(o.target_country_codes, "target_country_codes")
    c.text(o.description, "description")
    return OfferIndex(
        isco08_code=isco,
        work_country=o.place.country_code,
        mobility_type=o.contract.mobility_type,
        start_date=start,
        deadline=c.date(o.application_deadline, "application_deadline"),
        target_countries=tuple(dict.fromkeys(o.target_country_codes)),
    )


def _consent(c: _Checker, k: consent_pb2.Consent) -> ConsentIndex:
    if not HEX64.fullmatch(k.subject_ref):
        c.fail(
            "subject_ref", "must be a keyed SHA-256 hash in lower-case hex (64 characters), never the number"
        )
    c.enum(k.status, consent_pb2.ConsentStatus, "status")
    if not k.purposes:
        c.fail("purposes", "at least one purpose is required")
    mask = 0
    for i, grant in enumerate(k.purposes):
        c.enum(grant.purpose, consent_pb2.Purpose, f"purposes[{i}].purpose")
        c.text(grant.notice_version, f"purposes[{i}].notice_version", required=True, limit=64)
        c.language(grant.notice_language_code, f"purposes[{i}].notice_language_code")
        mask |= purpose_bit(grant.purpose)
    participants: list[str] = []
    countries: list[str] = []
    bases: list[tuple[str, str, int]] = []
    for i, r in enumerate(k.recipients):
        target = r.WhichOneof("target")
        if target == "participant_id":
            if not PARTICIPANT_ID.fullmatch(r.participant_id):
                c.fail(f"recipients[{i}].participant_id", "must be a directory participant id")
            participants.append(r.participant_id)
        elif target == "country_code":
            c.country(r.country_code, f"recipients[{i}].country_code")
            countries.append(r.country_code)
        else:
            c.fail(f"recipients[{i}]", "must name a participant_id or a country_code")
        c.enum(r.transfer_basis, consent_pb2.TransferBasis, f"recipients[{i}].transfer_basis")
        bases.append((r.participant_id, r.country_code, r.transfer_basis))
        if r.transfer_basis in (
            consent_pb2.TRANSFER_BASIS_DPA_AUTHORISATION,
            consent_pb2.TRANSFER_BASIS_AUTHORITY_AGREEMENT,
        ):
            c.text(r.basis_reference, f"recipients[{i}].basis_reference", required=True, limit=200)
    for i, cat in enumerate(k.data_categories):
        c.enum(cat, consent_pb2.DataCategory, f"data_categories[{i}]")
    valid_from = c.timestamp(k, "valid_from", "valid_from")
    # Absent: the hub's policy gives the default validity (hub.domain.consent_policy).
    valid_until = c.timestamp(k, "valid_until", "valid_until") if k.HasField("valid_until") else None
    if valid_until is not None and valid_until <= valid_from:
        c.fail("valid_until", "must be after valid_from")
    if k.erasure_requested and k.status != consent_pb2.CONSENT_STATUS_WITHDRAWN:
        c.fail("erasure_requested", "erasure is requested with status WITHDRAWN")
    c.enum(k.evidence.channel, consent_pb2.CollectionChannel, "evidence.channel")
    evidence_at = c.timestamp(k.evidence, "collected_at", "evidence.collected_at")
    c.text(k.evidence.collected_by, "evidence.collected_by", required=True, limit=200)
    if not HEX64.fullmatch(k.evidence.notice_sha256):
        c.fail("evidence.notice_sha256", "must be a SHA-256 in lower-case hex")
    c.text(k.evidence.reference, "evidence.reference", limit=200)
    return ConsentIndex(
        status=k.status,
        purpose_mask=mask,
        valid_from=valid_from,
        valid_until=valid_until,
        recipient_participants=tuple(dict.fromkeys(participants)),
        recipient_countries=tuple(dict.fromkeys(countries)),
        recipient_bases=tuple(bases),
        erasure_requested=k.erasure_requested,
        grants=tuple((g.purpose, g.notice_version) for g in k.purposes),
        evidence_at=evidence_at,
        evidence_reference=k.evidence.reference,
    )


def _event(c: _Checker, e: mobility_pb2.MobilityEvent) -> MobilityEventIndex:
    for name in ("application_origin_participant_id",):
        if not PARTICIPANT_ID.fullmatch(getattr(e, name)):
            c.fail(name, "must be a directory participant id")
    if not RECORD_ID.fullmatch(e.application_id):
        c.fail("application_id", "must be 1 to 128 characters from [A-Za-z0-9._:-]")
    c.enum(e.type, mobility_pb2.MobilityEventType, "type")
    occurred = c.date(e.occurred_on, "occurred_on", required=True)
    assert occurred is not None
    is_application = e.type == mobility_pb2.MOBILITY_EVENT_TYPE_APPLICATION
    if is_application:
        if not RECORD_ID.fullmatch(e.profile_record_id):
            c.fail("profile_record_id", "an application names the candidate's profile")
        if not PARTICIPANT_ID.fullmatch(e.offer_origin_participant_id):
            c.fail("offer_origin_participant_id", "an application names the offer's origin")
        if not RECORD_ID.fullmatch(e.offer_record_id):
            c.fail("offer_record_id", "an application names the offer")
    elif e.profile_record_id or e.offer_origin_participant_id or e.offer_record_id:
        c.fail("profile_record_id", "only an application names the profile and the offer")
    if e.type == mobility_pb2.MOBILITY_EVENT_TYPE_PREPARATION:
        c.enum(e.preparation_step, mobility_pb2.PreparationStep, "preparation_step")
    elif e.preparation_step:
        c.fail("preparation_step", "only a PREPARATION event has a preparation step")
    if e.type == mobility_pb2.MOBILITY_EVENT_TYPE_REINTEGRATION:
        c.enum(e.reintegration_outcome, mobility_pb2.ReintegrationOutcome, "reintegration_outcome")
    elif e.reintegration_outcome:
        c.fail("reintegration_outcome", "only a REINTEGRATION event has an outcome")
    if e.header.version != 1:
        c.fail("header.version", "mobility events are not versioned: publish a new event (version 1)")
    c.text(e.note, "note", limit=2000)
    return MobilityEventIndex(
        application_origin=e.application_origin_participant_id,
        application_id=e.application_id,
        type=e.type,
        occurred_on=occurred,
        profile_record_id=e.profile_record_id,
        offer_origin=e.offer_origin_participant_id,
        offer_record_id=e.offer_record_id,
        reintegration_outcome=e.reintegration_outcome,
    )


def _header_day(header: common_pb2.RecordHeader) -> date:
    if header.HasField("updated_at") and 0 < header.updated_at.seconds < _MAX_TS_SECONDS:
        return (_EPOCH + timedelta(seconds=header.updated_at.seconds)).date()
    return datetime.now(UTC).date()


_PARSERS: dict[PayloadKind, tuple[Any, Callable[[_Checker, Any], Index]]] = {
    PayloadKind.CANDIDATE_PROFILE: (profile_pb2.CandidateProfile, _profile),
    PayloadKind.PERSONAL_DETAILS: (profile_pb2.PersonalDetails, _personal),
    PayloadKind.JOB_OFFER: (offer_pb2.JobOffer, _offer),
    PayloadKind.CONSENT: (consent_pb2.Consent, _consent),
    PayloadKind.MOBILITY_EVENT: (mobility_pb2.MobilityEvent, _event),
}


def message_of(kind: PayloadKind, payload: bytes) -> Message:
    """The message of a payload already verified and parsed with ``parse``."""
    return _PARSERS[kind][0].FromString(payload)  # type: ignore[no-any-return]
