"""EURES exchange in HR Open Standards 4.x JSON: PositionOpening ↔ JobOffer, Candidate ↔ the
candidate's two records (CandidateProfile and PersonalDetails).

The fields read and written, and how each maps, are listed in
docs/formats/eures-hropen.md. EURES codes every classified value: occupations
are ``jobCategories`` entries in the ISCO2008 list or ESCO occupation URIs;
languages are competencies whose CEFR dimensions (``CEF-Understanding-Listening``
…) carry a level, of which the lowest becomes the candidate's level (never
overstated). Nothing is guessed: a value outside those codes is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pycountry
from spehub.v1 import common_pb2, offer_pb2, profile_pb2

from adapters.base import Converted, Problem, Problems, keep_resolutions
from adapters.codelists import CodeLists
from adapters.json_offers import JsonAdapter, timestamp
from adapters.languages import add_language
from adapters.people import (
    CEFR_NAMES,
    MOBILITY_BY_OFFERING,
    NACE,
    OFFERING_BY_MOBILITY,
    Pseudonyms,
    birth,
    candidate_pair,
    cefr,
    country,
    date_text,
    e164,
    full_date,
    nationality,
    period_date,
)

ESCO_OCCUPATION = "http://data.europa.eu/esco/occupation/"
ESCO_SKILL = "http://data.europa.eu/esco/skill/"
ISCO_LIST = "ISCO2008"
DOCUMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
LICENCE = re.compile(r"[A-Z][A-Z0-9]{0,3}")
OFFERING = {
    "DirectHire": (offer_pb2.CONTRACT_TYPE_PERMANENT, common_pb2.MOBILITY_TYPE_PERMANENT),
    "Temporary": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "Contract": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "Seasonal": (offer_pb2.CONTRACT_TYPE_SEASONAL, common_pb2.MOBILITY_TYPE_SEASONAL),
    "Apprenticeship": (offer_pb2.CONTRACT_TYPE_APPRENTICESHIP, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "TemporaryToHire": (offer_pb2.CONTRACT_TYPE_TEMPORARY_AGENCY, common_pb2.MOBILITY_TYPE_TEMPORARY),
}
OFFERING_CODES = {
    offer_pb2.CONTRACT_TYPE_PERMANENT: "DirectHire",
    offer_pb2.CONTRACT_TYPE_FIXED_TERM: "Temporary",
    offer_pb2.CONTRACT_TYPE_SEASONAL: "Seasonal",
    offer_pb2.CONTRACT_TYPE_APPRENTICESHIP: "Apprenticeship",
    offer_pb2.CONTRACT_TYPE_TEMPORARY_AGENCY: "TemporaryToHire",
}
INTERVALS = {
    "Hour": common_pb2.PAY_PERIOD_HOUR,
    "Day": common_pb2.PAY_PERIOD_DAY,
    "Week": common_pb2.PAY_PERIOD_WEEK,
    "Month": common_pb2.PAY_PERIOD_MONTH,
    "Year": common_pb2.PAY_PERIOD_YEAR,
}
INTERVAL_CODES = {v: k for k, v in INTERVALS.items()}
CLOSED = {"Closed", "Inactive", "Cancelled", "Filled"}


def _first(value: Any) -> dict[str, Any]:
    """The first object of a list (HR Open repeats most things), or the object itself, or {}."""
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str:
    """The text of an HR Open identifier ({"value": …}) or of a plain string."""
    return str(value.get("value") or "") if isinstance(value, dict) else str(value or "")


class EuresHrOpen(JsonAdapter):
    """The EURES HR Open JSON adapter (offers and candidates)."""

    name = "eures-hropen"

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        target_country_codes: tuple[str, ...] = (),
        subject_key: bytes = b"",
        workers: int | None = None,
        default_country: str = "",
        **_: Any,
    ) -> None:
        super().__init__(codelists, origin_participant_id, target_country_codes, workers)
        self.default_country = country(default_country)
        # Only candidates need it; a file of offers is read without one.
        self.pseudonyms = Pseudonyms(subject_key) if subject_key else None

    def offers_in(self, data: Any) -> tuple[list[Any], str]:
        if isinstance(data, dict) and isinstance(data.get("candidate"), dict):
            return [data["candidate"]], "$.candidate"
        return super().offers_in(data)

    def convert_item(self, item: Any, where: str) -> Iterator[Converted]:
        if isinstance(item, dict) and ("person" in item or "profiles" in item):
            yield from self.convert_candidate(item, where)
        else:
            yield self.convert(item, where)

    # -- PositionOpening → JobOffer ---------------------------------------------------------

    def convert(self, o: Any, where: str) -> Converted:
        if not isinstance(o, dict) or not isinstance(o.get("positionProfiles"), list):
            return Converted(
                where, None, (Problem(where, "$", "neither a PositionOpening nor a Candidate object"),)
            )
        problems = Problems(where)
        error, warn = problems.error, problems.warn
        offer = offer_pb2.JobOffer()
        doc_id = _id(o.get("documentId"))
        if not DOCUMENT_ID.fullmatch(doc_id):
            error("documentId.value", "missing or not 1-100 characters from [A-Za-z0-9._:-]")
        offer.header.record_id, offer.header.origin_participant_id = f"EU-{doc_id}", self.origin
        if str(o.get("statusCode") or "") in CLOSED:
            error("statusCode", "the position is closed: withdraw the record instead of publishing it")
        if len(o["positionProfiles"]) > 1:
            warn("positionProfiles", "only the first position profile is carried over")
        p = _first(o["positionProfiles"])
        posting = _first(p.get("postingInstructions"))
        valid_from = str(o.get("validFrom") or posting.get("start") or "")
        stamp = _instant(valid_from)
        if stamp is None:
            error("validFrom", "missing or not an ISO 8601 date (nor postingInstructions[0].start)")
        else:
            offer.header.version = int(stamp.timestamp())
            offer.header.updated_at.CopyFrom(timestamp(stamp))
        deadline = full_date(str(posting.get("end") or ""))
        if deadline:
            offer.application_deadline.CopyFrom(deadline)
        offer.title = str(p.get("positionTitle") or "")
        if not offer.title:
            error("positionProfiles[0].positionTitle", "missing")
        self._occupation(offer.occupation, p.get("jobCategories"), "", problems, "positionProfiles[0]")
        offer.occupation.title = offer.title
        organisation = _first(p.get("positionOrganizations"))
        offer.employer.name = str(organisation.get("name") or "")
        if not offer.employer.name:
            error("positionProfiles[0].positionOrganizations[0].name", "the hub needs the employer's name")
        industry = str(organisation.get("industryCode") or "")
        if NACE.fullmatch(industry):
            offer.employer.nace_code = industry
        location = _first(p.get("positionLocation"))
        offer.place.country_code = country(str(location.get("countryCode") or ""))
        if len(offer.place.country_code) != 2:
            error("positionProfiles[0].positionLocation[0].countryCode", "missing or not ISO 3166-1 alpha-2")
        offer.employer.country_code = offer.place.country_code
        offer.place.locality = str(location.get("city") or "")
        offer.place.postal_code = str(location.get("postalCode") or "")
        offer.place.region = str(_first(location.get("countrySubDivisions")).get("value") or "")
        quantity = p.get("positionOpenQuantity")
        if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity >= 1:
            offer.positions = quantity
        else:
            error("positionProfiles[0].positionOpenQuantity", "missing or not a positive whole number")
        offering = [str(c) for c in p.get("positionOfferingTypeCodes") or []]
        known = [c for c in offering if c in OFFERING]
        if known:
            offer.contract.type, offer.contract.mobility_type = OFFERING[known[0]]
        else:
            error(
                "positionProfiles[0].positionOfferingTypeCodes",
                f"{offering or 'missing'}: one of {sorted(OFFERING)} is needed",
            )
        period = p.get("positionPeriod") or {}
        start = full_date(str(period.get("start") or ""))
        if start:
            offer.contract.start_date.CopyFrom(start)
        end = full_date(str(period.get("end") or ""))
        if start and end and offer.contract.type == offer_pb2.CONTRACT_TYPE_SEASONAL:
            offer.contract.seasonal_window.start.CopyFrom(start)
            offer.contract.seasonal_window.end.CopyFrom(end)
        offer.description = str(_first(p.get("positionFormattedDescriptions")).get("content") or "")
        self._pay(offer, p.get("offeredRemunerationPackage") or {}, problems)
        for j, competency in enumerate(p.get("positionCompetencies") or []):
            self._competency(
                competency,
                offer.required_skills,
                offer.required_languages,
                problems,
                f"positionCompetencies[{j}]",
            )
        offer.target_country_codes.extend(self.targets)
        return problems.result(offer)

    def _pay(self, offer: offer_pb2.JobOffer, package: dict[str, Any], problems: Problems) -> None:
        low = high = None
        currency = interval = ""
        for j, r in enumerate(package.get("ranges") or []):
            kind = str(r.get("typeCode") or "")
            for key, amount in (
                ("minimumAmount", r.get("minimumAmount")),
                ("maximumAmount", r.get("maximumAmount")),
                ("referenceAmount", r.get("referenceAmount")),
            ):
                if not isinstance(amount, dict):
                    continue
                value = amount.get("value")
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    problems.warn(
                        f"offeredRemunerationPackage.ranges[{j}].{key}.value",
                        "not an amount: the pay is dropped",
                    )
                    return
                minor = round(value * 100)
                if key == "minimumAmount" or (key == "referenceAmount" and "Maximum" not in kind):
                    low = minor
                if key == "maximumAmount" or (key == "referenceAmount" and "Minimum" not in kind):
                    high = minor
                currency = str(amount.get("currency") or currency)
            interval = str(r.get("intervalCode") or interval)
        if low is None and high is None:
            return
        if interval not in INTERVALS:
            problems.warn(
                "offeredRemunerationPackage.ranges[].intervalCode",
                f"not one of {sorted(INTERVALS)}: the pay is dropped",
            )
            return
        offer.pay.min_minor_units = low if low is not None else high  # type: ignore[assignment]
        offer.pay.max_minor_units = high if high is not None else low  # type: ignore[assignment]
        offer.pay.currency_code, offer.pay.period = currency, INTERVALS[interval]

    # -- Candidate → CandidateProfile + PersonalDetails --------------------------------------

    def convert_candidate(self, c: dict[str, Any], where: str) -> Iterator[Converted]:
        problems = Problems(where)
        error = problems.error
        if self.pseudonyms is None:
            error("$", "candidates are keyed by the SPE's subject key: give one (--subject-key-file)")
            yield problems.result(None)
            return
        person: dict[str, Any] = c["person"] if isinstance(c.get("person"), dict) else {}
        doc_id = _id(c.get("documentId")) or _id(person.get("id"))
        if not doc_id:
            error("documentId.value", "missing: the candidate cannot be keyed")
        profile, personal = candidate_pair(self.origin, self.pseudonyms(doc_id))
        communication = person.get("communication") or {}
        residence = country(str(_first(communication.get("address")).get("countryCode") or ""))
        if len(residence) != 2 and self.default_country:
            problems.warn(
                "person.communication.address[0].countryCode",
                f"missing: the residence is taken as {self.default_country} (--country)",
            )
            residence = self.default_country
        if len(residence) != 2:
            error(
                "person.communication.address[0].countryCode",
                "missing or not ISO 3166-1 alpha-2, and no default country given (--country)",
            )
        profiles = c.get("profiles") or []
        if not profiles:
            error("profiles", "a candidate needs a profile")
        self.fill_profile(profile, _first(profiles), residence, problems)
        self.fill_person(personal, person, residence, problems)
        yield from problems.results(profile, personal)

    def fill_profile(
        self, profile: profile_pb2.CandidateProfile, p: dict[str, Any], residence: str, problems: Problems
    ) -> None:
        warn = problems.warn
        profile.residence_country_code = residence
        preferences = p.get("positionPreferences") or []
        categories = [cat for pref in preferences for cat in pref.get("jobCategories") or []]
        titles = [str(t) for pref in preferences for t in pref.get("positionTitles") or []]
        self._occupation(
            profile.occupations.add(),
            categories,
            titles[0] if titles else "",
            problems,
            "profiles[0].positionPreferences",
        )
        for j, pref in enumerate(preferences):
            for loc in pref.get("locations") or []:
                code = country(str((loc.get("referenceLocation") or {}).get("countryCode") or ""))
                if code and (len(code) != 2 or pycountry.countries.get(alpha_2=code) is None):
                    warn(
                        f"profiles[0].positionPreferences[{j}].locations",
                        "not an ISO 3166-1 alpha-2 code: dropped",
                    )
                elif code and code not in profile.desired_country_codes:
                    profile.desired_country_codes.append(code)
            for code in pref.get("positionOfferingTypeCodes") or []:
                mobility = MOBILITY_BY_OFFERING.get(str(code))
                if mobility is None:
                    warn(
                        f"profiles[0].positionPreferences[{j}].positionOfferingTypeCodes",
                        f"{code}: not a mobility type",
                    )
                elif mobility not in profile.mobility_types:
                    profile.mobility_types.append(mobility)
        for j, q in enumerate(p.get("qualifications") or []):
            self._competency(
                q, profile.skills, profile.languages, problems, f"profiles[0].qualifications[{j}]"
            )
        for j, job in enumerate(p.get("employment") or []):
            self._employment(profile.work_experiences.add(), job, problems, f"profiles[0].employment[{j}]")
        for j, school in enumerate(p.get("education") or []):
            degree = _first(school.get("degrees"))
            level = _first(school.get("educationLevelCodes"))
            title = str(degree.get("name") or level.get("name") or "")
            if not title:
                warn(f"profiles[0].education[{j}]", "no degree or level name: not carried over")
                continue
            q = profile.qualifications.add(title=title)
            if level.get("listName") == "EQF" and re.fullmatch(r"[1-8]", str(level.get("code") or "")):
                q.eqf_level = int(level["code"])  # type: ignore[assignment]
        for j, licence in enumerate(p.get("licenses") or []):
            category = _id((licence.get("type") or {}).get("id")) or str(
                (licence.get("type") or {}).get("name") or ""
            )
            if LICENCE.fullmatch(category):
                profile.driving_licence_categories.append(category)
            else:
                warn(
                    f"profiles[0].licenses[{j}].type",
                    "not a driving licence category such as 'B' or 'CE': dropped",
                )
        availability = _first((p.get("personAvailability") or {}).get("availabilityDates"))
        start = full_date(str(availability.get("startDateTime") or ""))
        if start:
            profile.available_from.CopyFrom(start)
        profile.summary = str(p.get("executiveSummary") or "")

    def fill_person(
        self,
        personal: profile_pb2.PersonalDetails,
        person: dict[str, Any],
        residence: str,
        problems: Problems,
    ) -> None:
        name = person.get("name") or {}
        personal.given_names = str(name.get("given") or "")
        personal.family_name = str(name.get("family") or "")
        if not personal.family_name:
            problems.error("person.name.family", "missing")
        if person.get("birthDate"):
            birth(personal, str(person["birthDate"]), problems, "person.birthDate")
        # "citizenShip" is how one vendor spells it; HR Open says "citizenship".
        for j, code in enumerate(person.get("citizenship") or person.get("citizenShip") or []):
            nationality(personal, str(code), problems, f"person.citizenship[{j}]")
        communication = person.get("communication") or {}
        for j, phone in enumerate(communication.get("phone") or []):
            number = e164(str(phone.get("formattedNumber") or ""), residence)
            if number is None:
                problems.warn(
                    f"person.communication.phone[{j}]",
                    f"not a valid phone number for {residence or 'the residence country'}: dropped",
                )
            else:
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_PHONE, value=number)
        for email in communication.get("email") or []:
            if email.get("address"):
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_EMAIL, value=str(email["address"]))

    # -- shared pieces -----------------------------------------------------------------------

    def _occupation(
        self, occ: common_pb2.Occupation, categories: Any, title: str, problems: Problems, where: str
    ) -> None:
        isco = esco = ""
        if title:
            occ.title = title
        for cat in categories if isinstance(categories, list) else []:
            if not isinstance(cat, dict):
                continue
            code = str(cat.get("code") or "")
            if cat.get("listName") == ISCO_LIST and not isco:
                isco = code
            elif code.startswith(ESCO_OCCUPATION) and not esco:
                esco = code
        if isco and not (self.codelists.is_unit(isco) or isco in self.codelists.isco_groups):
            problems.error(f"{where}.jobCategories", f"{isco} is not an ISCO-08 group")
            return
        if esco:
            occ.esco_uri = esco
        if isco:
            occ.isco08_code = isco
            return
        resolution = self.codelists.resolve_esco(esco) if esco else self.codelists.resolve_title(title)
        problems.occupation(occ, resolution, f"{where}.jobCategories")

    def _competency(
        self, q: dict[str, Any], skills: Any, languages: Any, problems: Problems, where: str
    ) -> None:
        code = _id(_first(q.get("competencyIds")))
        dimensions = [
            d for d in q.get("competencyDimensions") or [] if str(d.get("type") or "").startswith("CEF")
        ]
        if str(q.get("taxonomyId") or "") == "language" or dimensions:
            levels = [cefr(_id(d.get("score"))) for d in dimensions] or [None]
            add_language(languages, code or str(q.get("competencyName") or ""), levels, problems, where)
            return
        if code.startswith(ESCO_SKILL):
            skills.add(esco_uri=code, label=str(q.get("competencyName") or ""))
        elif q.get("competencyName"):
            skills.add(label=str(q["competencyName"]))
        else:
            problems.warn(
                f"{where}.competencyIds", "neither an ESCO skill nor a named competency: not carried over"
            )

    def _employment(
        self, w: profile_pb2.WorkExperience, job: dict[str, Any], problems: Problems, where: str
    ) -> None:
        history = _first(job.get("positionHistories"))
        categories = history.get("jobCategories") or []
        title = str(history.get("title") or "")
        if categories or title:
            trial = common_pb2.Occupation()
            quiet = Problems(where)
            self._occupation(trial, categories, title, quiet, where)
            if trial.isco08_code:
                w.occupation.CopyFrom(trial)
            else:
                problems.warn(
                    f"{where}.positionHistories[0]", "occupation not resolved: the period is kept without it"
                )
        start = period_date(str(job.get("start") or ""))
        end = period_date(str(job.get("end") or ""), end=True)
        if job.get("start") and start is None:
            problems.warn(f"{where}.start", "not a date written YYYY, YYYY-MM or YYYY-MM-DD: dropped")
        if job.get("end") and end is None:
            problems.warn(f"{where}.end", "not a date written YYYY, YYYY-MM or YYYY-MM-DD: dropped")
        if start:
            w.period.start.CopyFrom(start)
        if end:
            w.period.end.CopyFrom(end)
        address = _first((job.get("organization") or {}).get("address"))
        w.country_code = country(str(address.get("countryCode") or ""))
        descriptions = job.get("descriptions") or []
        w.description = str(descriptions[0]) if descriptions else ""

    # -- back to HR Open ---------------------------------------------------------------------

    def write(self, record: Any) -> dict[str, Any]:
        if isinstance(record, offer_pb2.JobOffer):
            return self.write_offer(record)
        if isinstance(record, profile_pb2.CandidateProfile):
            return {
                "documentId": {"value": record.header.record_id},
                "profiles": [self.write_profile(record)],
            }
        if isinstance(record, profile_pb2.PersonalDetails):
            return {"documentId": {"value": record.header.record_id}, "person": self.write_person(record, "")}
        raise TypeError(f"no HR Open form for {type(record).__name__}")

    def write_offer(self, offer: offer_pb2.JobOffer) -> dict[str, Any]:
        categories = [{"code": offer.occupation.isco08_code, "listName": ISCO_LIST}]
        if offer.occupation.esco_uri:
            categories.append({"code": offer.occupation.esco_uri, "listName": "ESCO_Occupations"})
        profile: dict[str, Any] = {
            "positionTitle": offer.title,
            "jobCategories": categories,
            "positionOrganizations": [{"name": offer.employer.name}],
            "positionLocation": [
                {
                    "countryCode": offer.place.country_code,
                    "city": offer.place.locality,
                    "postalCode": offer.place.postal_code,
                    "countrySubDivisions": [{"type": "region", "value": offer.place.region}]
                    if offer.place.region
                    else [],
                }
            ],
            "positionOpenQuantity": offer.positions,
            "positionOfferingTypeCodes": [OFFERING_CODES.get(offer.contract.type, "")],
            "positionFormattedDescriptions": [{"content": offer.description}],
            "positionCompetencies": [
                {"competencyIds": [{"value": s.esco_uri}], "competencyName": s.label}
                if s.esco_uri
                else {"competencyName": s.label}
                for s in offer.required_skills
            ]
            + [_language_competency(lang) for lang in offer.required_languages],
        }
        if offer.employer.nace_code:
            profile["positionOrganizations"][0]["industryCode"] = offer.employer.nace_code
        if offer.HasField("application_deadline"):
            profile["postingInstructions"] = [{"end": date_text(offer.application_deadline)}]
        if offer.contract.HasField("start_date"):
            profile["positionPeriod"] = {"start": date_text(offer.contract.start_date)}
            if offer.contract.HasField("seasonal_window"):
                profile["positionPeriod"]["end"] = date_text(offer.contract.seasonal_window.end)
        if offer.HasField("pay"):
            profile["offeredRemunerationPackage"] = {
                "ranges": [
                    {
                        "intervalCode": INTERVAL_CODES.get(offer.pay.period, ""),
                        "minimumAmount": {
                            "value": offer.pay.min_minor_units / 100,
                            "currency": offer.pay.currency_code,
                        },
                        "maximumAmount": {
                            "value": offer.pay.max_minor_units / 100,
                            "currency": offer.pay.currency_code,
                        },
                    }
                ]
            }
        return {
            "documentId": {"value": offer.header.record_id.removeprefix("EU-")},
            "validFrom": offer.header.updated_at.ToDatetime(UTC).isoformat().replace("+00:00", "Z"),
            "statusCode": "Active",
            "positionProfiles": [profile],
        }

    def write_profile(self, p: profile_pb2.CandidateProfile) -> dict[str, Any]:
        occ = p.occupations[0]
        categories = [{"code": occ.isco08_code, "listName": ISCO_LIST}]
        if occ.esco_uri:
            categories.append({"code": occ.esco_uri, "listName": "ESCO_Occupations"})
        out: dict[str, Any] = {
            "positionPreferences": [
                {
                    "jobCategories": categories,
                    "positionTitles": [occ.title] if occ.title else [],
                    "locations": [{"referenceLocation": {"countryCode": c}} for c in p.desired_country_codes],
                    "positionOfferingTypeCodes": [OFFERING_BY_MOBILITY[m] for m in p.mobility_types],
                }
            ],
            "qualifications": [
                {"competencyIds": [{"value": s.esco_uri}], "competencyName": s.label}
                if s.esco_uri
                else {"competencyName": s.label}
                for s in p.skills
            ]
            + [_language_competency(lang) for lang in p.languages],
            "employment": [_write_employment(w) for w in p.work_experiences],
            "education": [
                {
                    "degrees": [{"name": q.title}],
                    "educationLevelCodes": [{"listName": "EQF", "code": str(q.eqf_level)}]
                    if q.eqf_level
                    else [],
                }
                for q in p.qualifications
            ],
            "licenses": [{"type": {"id": {"value": c}}} for c in p.driving_licence_categories],
            "executiveSummary": p.summary,
        }
        if p.HasField("available_from"):
            out["personAvailability"] = {
                "availabilityDates": [{"startDateTime": date_text(p.available_from)}]
            }
        return out

    def write_person(self, d: profile_pb2.PersonalDetails, residence: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": {"given": d.given_names, "family": d.family_name},
            "citizenship": list(d.nationality_country_codes),
            "communication": {
                "address": [{"countryCode": residence}] if residence else [],
                "phone": [
                    {"formattedNumber": c.value}
                    for c in d.contacts
                    if c.type == profile_pb2.CONTACT_TYPE_PHONE
                ],
                "email": [
                    {"address": c.value} for c in d.contacts if c.type == profile_pb2.CONTACT_TYPE_EMAIL
                ],
            },
        }
        if d.HasField("birth_date"):
            out["birthDate"] = date_text(d.birth_date)
        return out

    def round_trip(self, record: Any, where: str) -> Any:
        """Common → HR Open → common, for the conformance check."""
        problems = Problems(where)
        if isinstance(record, offer_pb2.JobOffer):
            return keep_resolutions(record, self.convert(self.write_offer(record), where).record)
        if isinstance(record, profile_pb2.CandidateProfile):
            again = profile_pb2.CandidateProfile()
            again.header.CopyFrom(record.header)
            again.consent_record_id = record.consent_record_id
            self.fill_profile(again, self.write_profile(record), record.residence_country_code, problems)
            return None if problems.items and problems.failed else keep_resolutions(record, again)
        again_d = profile_pb2.PersonalDetails()
        for name in ("header", "profile_record_id", "consent_record_id"):
            value = getattr(record, name)
            if name == "header":
                again_d.header.CopyFrom(value)
            else:
                setattr(again_d, name, value)
        # Phone numbers are in E.164 already: any region reads them back.
        self.fill_person(again_d, self.write_person(record, ""), "", problems)
        return None if problems.failed else again_d


def _language_competency(lang: common_pb2.LanguageSkill) -> dict[str, Any]:
    level = CEFR_NAMES[lang.level]
    return {
        "competencyIds": [{"value": lang.language_code}],
        "taxonomyId": "language",
        "competencyDimensions": [{"type": "CEF-Overall", "score": {"value": level}}],
    }


def _write_employment(w: profile_pb2.WorkExperience) -> dict[str, Any]:
    job: dict[str, Any] = {"descriptions": [w.description] if w.description else []}
    if w.HasField("occupation"):
        job["positionHistories"] = [
            {
                "title": w.occupation.title,
                "jobCategories": [{"code": w.occupation.isco08_code, "listName": ISCO_LIST}],
            }
        ]
    if w.period.HasField("start"):
        job["start"] = date_text(w.period.start)
    if w.period.HasField("end"):
        job["end"] = date_text(w.period.end)
    if w.country_code:
        job["organization"] = {"address": [{"countryCode": w.country_code}]}
    return job


def _instant(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
