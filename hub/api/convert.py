"""Protobuf ↔ domain, at the edge, once. Request filters are validated here (INVALID_ARGUMENT)."""

from __future__ import annotations

from datetime import date

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import common_pb2, envelope_pb2, exchange_pb2, mobility_pb2, pool_pb2

from hub.domain import codes, matching, records
from hub.domain.stored import CycleRow, OfferFilter, ProfileFilter, StoredEnvelope
from hub.errors import InvalidRequestError
from hub.services.exchange import RecordResult

from .errors import STATUS_FOR_REASON


def envelope_to_proto(stored: StoredEnvelope) -> envelope_pb2.SignedEnvelope:
    return envelope_pb2.SignedEnvelope(
        payload=stored.payload,
        payload_type=stored.payload_type,  # type: ignore[arg-type]
        signer_participant_id=stored.signer_id,
        key_id=stored.key_id,
        signature=stored.signature,
        signed_at=Timestamp(seconds=stored.signed_at_seconds, nanos=stored.signed_at_nanos),
    )


_OUTCOME = {
    "accepted": exchange_pb2.RECORD_OUTCOME_ACCEPTED,
    "duplicate": exchange_pb2.RECORD_OUTCOME_DUPLICATE,
    "rejected": exchange_pb2.RECORD_OUTCOME_REJECTED,
}


def result_to_proto(r: RecordResult) -> exchange_pb2.RecordResult:
    code = STATUS_FOR_REASON[r.reason].value[0] if r.reason else 0
    return exchange_pb2.RecordResult(
        index=r.index,
        payload_type=r.kind.payload_type if r.kind else envelope_pb2.PAYLOAD_TYPE_UNSPECIFIED,  # type: ignore[arg-type]
        record_id=r.record_id,
        version=r.version,
        outcome=_OUTCOME[r.outcome.value],
        reason=exchange_pb2.RejectionReason.Value(f"REJECTION_REASON_{r.reason.value}")
        if r.reason
        else exchange_pb2.REJECTION_REASON_UNSPECIFIED,
        code=code,
        field=r.field,
        message=r.message,
    )


def timestamp_from_us(us: int) -> Timestamp:
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def _isco(values: list[str], field: str) -> tuple[str, ...]:
    for i, v in enumerate(values):
        if not codes.ISCO08_PREFIX.fullmatch(v):
            raise InvalidRequestError(
                f"{field}[{i}] must be an ISCO-08 code or prefix of 1 to 4 digits", f"{field}[{i}]"
            )
    return tuple(values)


def _country(value: str, field: str) -> str:
    if value and not codes.is_country(value):
        raise InvalidRequestError(f"{field} must be an ISO 3166-1 alpha-2 code in upper case", field)
    return value


def _mobility(values: list[int], field: str) -> tuple[int, ...]:
    for i, m in enumerate(values):
        if m == 0 or m not in common_pb2.MobilityType.DESCRIPTOR.values_by_number:
            raise InvalidRequestError(
                f"{field}[{i}] must be a known MobilityType, not UNSPECIFIED", f"{field}[{i}]"
            )
    return tuple(values)


def _date(value: common_pb2.Date, field: str) -> date | None:
    if not (value.year or value.month or value.day):
        return None
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise InvalidRequestError(f"{field} is not a valid calendar date", field) from None


def profile_filter(req: pool_pb2.SearchProfilesRequest) -> ProfileFilter:
    langs = []
    for i, lang in enumerate(req.languages):
        if not codes.is_language(lang.language_code):
            raise InvalidRequestError(
                f"languages[{i}].language_code must be an ISO 639 code", f"languages[{i}]"
            )
        if lang.level == 0 or lang.level not in common_pb2.CefrLevel.DESCRIPTOR.values_by_number:
            raise InvalidRequestError(
                f"languages[{i}].level must be a known CefrLevel", f"languages[{i}].level"
            )
        langs.append((lang.language_code, lang.level))
    mask = 0
    for m in _mobility(list(req.mobility_types), "mobility_types"):
        mask |= records.mobility_bit(m)
    for i, c in enumerate(req.origin_country_codes):
        _country(c, f"origin_country_codes[{i}]")
    return ProfileFilter(
        isco08_prefixes=_isco(list(req.isco08_codes), "isco08_codes"),
        languages=tuple(langs),
        destination_country=_country(req.destination_country_code, "destination_country_code"),
        mobility_mask=mask,
        available_by=_date(req.available_by, "available_by"),
        origin_countries=tuple(req.origin_country_codes),
    )


def offer_filter(req: pool_pb2.SearchOffersRequest, today: date) -> OfferFilter:
    return OfferFilter(
        isco08_prefixes=_isco(list(req.isco08_codes), "isco08_codes"),
        work_country=_country(req.work_country_code, "work_country_code"),
        mobility_types=_mobility(list(req.mobility_types), "mobility_types"),
        target_country=_country(req.target_country_code, "target_country_code"),
        open_on=None if req.include_closed else today,
    )


def match_to_proto(m: matching.Match) -> pool_pb2.MatchScore:
    return pool_pb2.MatchScore(
        score=m.score,
        occupation_fit=m.occupation_fit,  # type: ignore[arg-type]
        skills_in_common=list(m.skills_in_common),
        skills_missing=list(m.skills_missing),
        languages=[
            pool_pb2.LanguageFit(language_code=code, required=required, held=held)  # type: ignore[arg-type]
            for code, required, held in m.languages
        ],
        destination_wanted=m.destination_wanted,
        mobility_type_wanted=m.mobility_type_wanted,
        available_in_time=m.available_in_time,
        experience_months=m.experience_months,
        required_experience_months=m.required_experience_months,
        explanations=list(m.explanations),
    )


def cycle_to_proto(row: CycleRow, events: list[StoredEnvelope]) -> mobility_pb2.Cycle:
    return mobility_pb2.Cycle(
        application_origin_participant_id=row.origin_id,
        application_id=row.application_id,
        profile_record_id=row.profile_record_id,
        offer_origin_participant_id=row.offer_origin_id,
        offer_record_id=row.offer_record_id,
        state=row.state,  # type: ignore[arg-type]
        events=[envelope_to_proto(e) for e in events],
    )
