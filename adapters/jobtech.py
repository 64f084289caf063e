"""Arbetsförmedlingen JobTech JobSearch ad JSON ↔ spehub.v1.JobOffer.

Reads one ad, a list of ads, or a JobSearch response (``hits``). The
occupation resolves to ISCO-08 through the official ESCO–SE mapping of its
JobTech occupation-name concept (one unit group, or the ad is reported with
the candidates). ``occupation_group.legacy_ams_taxonomy_id`` is the SSYK 2012
code, kept out of the resolution: there is no official SSYK→ISCO table among
the imported code lists. Dates are Swedish local time without offset;
``scope_of_work`` is a percentage of full time (40 h a week in Sweden);
languages carry no CEFR level (a warning says so); a removed ad is reported,
for the gateway to withdraw it.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from spehub.v1 import common_pb2, offer_pb2

from adapters.base import Converted, Problem, Problems
from adapters.codelists import Resolution
from adapters.json_offers import JsonAdapter, timestamp

STOCKHOLM = ZoneInfo("Europe/Stockholm")
FULL_TIME_HOURS = 40.0
SYSTEM = "JOBTECH_OCCUPATION_NAME"
PERMANENT = "Tillsvidare"
SEASONAL = {"Sommarjobb / feriejobb", "Säsongsanställning"}


class JobTechAds(JsonAdapter):
    """The Arbetsförmedlingen JobSearch ad adapter."""

    record_arrays = (("hits", "$.hits[{i}]"), ("hits.hits", "$.hits.hits[{i}]"))

    name = "jobtech-ads"

    def unwrap(self, array: str, item: Any) -> Any:
        if array == "hits.hits" and isinstance(item, dict):  # an Elasticsearch hit
            return item.get("_source", item)
        return item

    def offers_in(self, data: Any) -> tuple[list[Any], str]:
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            (key, ads), *_ = data.items()  # {"testannonser": [...]}: a named list of ads
            if key not in ("hits",):
                return ads, f"$.{key}[{{i}}]"
        if isinstance(data, dict) and isinstance(data.get("hits"), list):
            return data["hits"], "$.hits[{i}]"
        if isinstance(data, dict) and isinstance(data.get("hits"), dict):  # Elasticsearch shape
            return [h.get("_source", h) for h in data["hits"].get("hits", [])], "$.hits.hits[{i}]"
        return super().offers_in(data)

    def convert(self, ad: Any, where: str) -> Converted:
        problems = Problems(where)
        error, warn = problems.error, problems.warn

        if not isinstance(ad, dict):
            return Converted(where, None, (Problem(where, "$", "an ad must be a JSON object"),))
        if "annonsId" in ad or "annonsrubrik" in ad:  # the agency's internal (legacy) ad, Swedish keys
            reason = (
                "an ad in Arbetsförmedlingen's internal format (annonsId, annonsrubrik), not a JobSearch "
                "ad: send the JobSearch form of it (JobTech's elastic-importers converts one to the other)"
            )
            return Converted(where, None, (Problem(where, "$", reason),))
        if ad.get("removed"):
            error("removed", "the ad was removed: withdraw the record instead of publishing it")
        offer = offer_pb2.JobOffer()
        ad_id = str(ad.get("id") or "")
        if not re.fullmatch(r"[A-Za-z0-9]{1,40}", ad_id):
            error("id", "missing or not a JobSearch ad id")
        offer.header.record_id, offer.header.origin_participant_id = f"AF-{ad_id}", self.origin
        published = _local(ad.get("publication_date"))
        if published is None:
            error("publication_date", "missing or not a date-time")
        else:
            offer.header.version = int(published.timestamp())
            offer.header.updated_at.CopyFrom(timestamp(published))
        offer.title = str(ad.get("headline") or "")
        if not offer.title:
            error("headline", "missing")
        offer.description = str((ad.get("description") or {}).get("text") or "")
        occupation = ad.get("occupation") or {}
        concept = str(occupation.get("concept_id") or "")
        offer.occupation.national_code.CopyFrom(
            common_pb2.NationalCode(system=SYSTEM, code=concept, label=str(occupation.get("label") or ""))
        )
        offer.occupation.title = str(occupation.get("label") or "")
        units = self.codelists.jobtech.get(concept)
        if units is None:
            error(
                "occupation.concept_id",
                f"{concept or 'missing'}: not in the ESCO–SE mapping of the code lists",
            )
        elif len(units) == 1:
            Resolution(units[0], "JobTech concept", method="national_code", score=1.0).apply(offer.occupation)
        elif not units:
            error("occupation.concept_id", f"{concept} maps to no ISCO-08 unit group")
        else:
            # Several unit groups: the concept's own label decides among those only (Swedish labels are
            # not in the shipped lists: English or French ones may still settle it), else held.
            label = str(occupation.get("label") or "")
            problems.occupation(
                offer.occupation,
                self.codelists.resolve_title(label, "", frozenset(units), "national_code_and_title"),
                "occupation.concept_id",
            )
        employer = ad.get("employer") or {}
        offer.employer.name = str(employer.get("name") or "")
        if not offer.employer.name:
            error("employer.name", "missing")
        offer.employer.registration_id = str(employer.get("organization_number") or "")
        offer.employer.country_code = "SE"
        vacancies = ad.get("number_of_vacancies")
        if vacancies is None:  # one position, said so (as France Travail's offers without nombrePostes)
            warn("number_of_vacancies", "missing: taken as 1 position")
            offer.positions = 1
        elif isinstance(vacancies, int) and not isinstance(vacancies, bool) and vacancies >= 1:
            offer.positions = vacancies
        else:
            error("number_of_vacancies", "not a positive whole number")
        address = ad.get("workplace_address") or {}
        if address.get("country") not in (None, "Sverige"):
            error("workplace_address.country", "only ads for work in Sweden are mapped")
        offer.place.country_code = "SE"
        offer.place.region = str(address.get("region") or "")
        offer.place.locality = str(address.get("municipality") or address.get("city") or "")
        offer.place.postal_code = str(address.get("postcode") or "")
        duration = str((ad.get("duration") or {}).get("label") or "")
        employment = str((ad.get("employment_type") or {}).get("label") or "")
        if employment in SEASONAL:
            offer.contract.type, offer.contract.mobility_type = (
                offer_pb2.CONTRACT_TYPE_SEASONAL,
                common_pb2.MOBILITY_TYPE_SEASONAL,
            )
        elif duration == PERMANENT:
            offer.contract.type, offer.contract.mobility_type = (
                offer_pb2.CONTRACT_TYPE_PERMANENT,
                common_pb2.MOBILITY_TYPE_PERMANENT,
            )
        elif duration:
            offer.contract.type, offer.contract.mobility_type = (
                offer_pb2.CONTRACT_TYPE_FIXED_TERM,
                common_pb2.MOBILITY_TYPE_TEMPORARY,
            )
        else:
            error("duration", "missing: the contract type cannot be told")
        scope = (ad.get("scope_of_work") or {}).get("max")
        if isinstance(scope, int | float) and 0 < scope <= 100:
            offer.weekly_hours = FULL_TIME_HOURS * scope / 100
        deadline = _local(ad.get("application_deadline"))
        if deadline:
            offer.application_deadline.CopyFrom(
                common_pb2.Date(year=deadline.year, month=deadline.month, day=deadline.day)
            )
        must = ad.get("must_have") or {}
        for skill in must.get("skills") or []:
            if skill.get("label"):
                offer.required_skills.add(label=str(skill["label"]))
        for j, _ in enumerate(must.get("languages") or []):
            warn(f"must_have.languages[{j}]", "JobTech gives no CEFR level: not carried as a requirement")
        offer.target_country_codes.extend(self.targets)
        return problems.result(offer)

    def write(self, offer: offer_pb2.JobOffer) -> dict[str, Any]:
        """The JobSearch shape of a JobOffer (what the common schema carries of it)."""
        permanent = offer.contract.type == offer_pb2.CONTRACT_TYPE_PERMANENT
        seasonal = offer.contract.type == offer_pb2.CONTRACT_TYPE_SEASONAL
        out: dict[str, Any] = {
            "id": offer.header.record_id.removeprefix("AF-"),
            "headline": offer.title,
            "description": {"text": offer.description},
            "publication_date": datetime.fromtimestamp(offer.header.version, STOCKHOLM)
            .replace(tzinfo=None)
            .isoformat(),
            "occupation": {
                "concept_id": offer.occupation.national_code.code,
                "label": offer.occupation.national_code.label,
            },
            "employer": {"name": offer.employer.name, "organization_number": offer.employer.registration_id},
            "number_of_vacancies": offer.positions,
            "workplace_address": {
                "region": offer.place.region,
                "municipality": offer.place.locality,
                "postcode": offer.place.postal_code,
            },
            "employment_type": {"label": "Sommarjobb / feriejobb" if seasonal else "Vanlig anställning"},
            "duration": {"label": PERMANENT if permanent or seasonal else "Tidsbegränsad"},
            "must_have": {"skills": [{"label": s.label} for s in offer.required_skills]},
        }
        if offer.weekly_hours:
            pct = round(offer.weekly_hours / FULL_TIME_HOURS * 100)
            out["scope_of_work"] = {"min": pct, "max": pct}
        if offer.HasField("application_deadline"):
            d = offer.application_deadline
            out["application_deadline"] = f"{date(d.year, d.month, d.day).isoformat()}T23:59:59"
        return out


def _local(value: Any) -> datetime | None:
    """A JobTech date-time: Swedish local time when it has no offset."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=STOCKHOLM)
