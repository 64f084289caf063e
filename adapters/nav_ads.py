"""NAV's national vacancy JSON (the "pam-ad" model of arbeidsplassen.nav.no) ↔ spehub.v1.JobOffer.

Reads one ad or a list. The occupation comes from the ad's STYRK-08 category: STYRK-08, Statistics
Norway's classification, is ISCO-08 at four digits with national digits after the dot
("7411.11" is unit group 7411), and the STYRK code is kept as the national code. The employer's
SN2007 industry code ("33.170": NACE Rev. 2 with a national digit) becomes the NACE class
("C33.17"). Times are Norwegian local times. The ad's contact persons are personal data of the
employer's staff and are never carried. docs/formats/nav-ads.md has the field table.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pycountry
from spehub.v1 import common_pb2, offer_pb2

from adapters.base import Converted, Problems
from adapters.codelists import Resolution
from adapters.json_offers import JsonAdapter, timestamp
from adapters.people import date_text, dotted_date

OSLO = ZoneInfo("Europe/Oslo")
AD_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
STYRK = re.compile(r"([0-9]{4})(?:\.[0-9]{1,2})?")  # ASCII digits only (docs/adapters.md, "Digits")
SN2007 = re.compile(r"([0-9]{2})\.([0-9])([0-9])[0-9]?")
ENGAGEMENTS = {
    "Fast": (offer_pb2.CONTRACT_TYPE_PERMANENT, common_pb2.MOBILITY_TYPE_PERMANENT),
    "Sesong": (offer_pb2.CONTRACT_TYPE_SEASONAL, common_pb2.MOBILITY_TYPE_SEASONAL),
    "Vikariat": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "Engasjement": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "Prosjekt": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "Lærling": (offer_pb2.CONTRACT_TYPE_APPRENTICESHIP, common_pb2.MOBILITY_TYPE_TEMPORARY),
}
ENGAGEMENT_WORDS = {
    offer_pb2.CONTRACT_TYPE_PERMANENT: "Fast",
    offer_pb2.CONTRACT_TYPE_SEASONAL: "Sesong",
    offer_pb2.CONTRACT_TYPE_FIXED_TERM: "Vikariat",
    offer_pb2.CONTRACT_TYPE_APPRENTICESHIP: "Lærling",
}
# The country names NAV writes, in Norwegian; any other is looked up as an English name or code.
COUNTRIES = {"NORGE": "NO", "SVERIGE": "SE", "DANMARK": "DK", "FINLAND": "FI", "ISLAND": "IS"}
# NACE Rev. 2 sections by division (the classification's structure, Eurostat).
SECTIONS = [
    (3, "A"), (9, "B"), (33, "C"), (35, "D"), (39, "E"), (43, "F"), (47, "G"), (53, "H"), (56, "I"),
    (63, "J"), (66, "K"), (68, "L"), (75, "M"), (82, "N"), (84, "O"), (85, "P"), (88, "Q"), (93, "R"),
    (96, "S"), (98, "T"), (99, "U"),
]  # fmt: skip


class NavAds(JsonAdapter):
    """NAV's national vacancy adapter."""

    name = "nav-ads"

    def convert(self, ad: Any, where: str) -> Converted:
        problems = Problems(where)
        error, warn = problems.error, problems.warn
        if not isinstance(ad, dict):
            error("$", "an ad must be a JSON object")
            return problems.result(None)
        props = ad.get("properties") or {}
        uuid = str(ad.get("uuid") or "")
        if not AD_ID.fullmatch(uuid):
            error("uuid", "missing or not an ad id")
        status = str(ad.get("status") or "")
        if status != "ACTIVE":
            error("status", f"{status or 'missing'}: only an ACTIVE ad is published (withdraw the others)")
        header: dict[str, Any] = {"record_id": f"NAV-{uuid}", "origin_participant_id": self.origin}
        try:
            stamp = timestamp(_local(str(ad.get("updated") or "")))
            header["version"], header["updated_at"] = stamp.seconds, stamp
        except ValueError:
            error("updated", "missing or not an ISO 8601 date-time")
        title = str(props.get("jobtitle") or ad.get("title") or "")
        if not title:
            error("properties.jobtitle", "missing")
        employer = ad.get("employer") or {}
        name = str(employer.get("name") or ad.get("businessName") or "")
        if not name:
            error("employer.name", "the hub needs the employer's name")
        location = ad.get("location") or {}
        place = _country(str(location.get("country") or "NORGE"))
        if place is None:
            error("location.country", "not a country name or code known")
        count = str(props.get("positioncount") or "")
        positions = int(count) if count.isascii() and count.isdigit() else 0
        if not count:
            warn("properties.positioncount", "missing: taken as 1 position")
            positions = 1
        elif positions < 1:
            error("properties.positioncount", "not a positive whole number")
        occupation = common_pb2.Occupation(title=title)
        self._occupation(occupation, ad.get("categoryList") or [], title, problems)
        engagement = str(props.get("engagementtype") or "")
        contract = ENGAGEMENTS.get(engagement)
        if contract is None:
            error(
                "properties.engagementtype",
                f"{engagement or 'missing'}: only {', '.join(ENGAGEMENTS)} map to the common schema",
            )
        start = dotted_date(str(props.get("starttime") or ""))
        if start is None and props.get("starttime"):
            warn("properties.starttime", 'not a date ("Snarest": as soon as possible): not carried')
        deadline = dotted_date(str(props.get("applicationdue") or ""))
        if deadline is None and props.get("applicationdue"):
            warn("properties.applicationdue", 'not a date ("Snarest": as soon as possible): not carried')
        if props.get("extent"):
            warn(
                "properties.extent",
                "full or part time without hours: not carried (the schema keeps weekly hours)",
            )
        nace = ""
        for j, industry in enumerate((employer.get("properties") or {}).get("nace2") or []):
            nace = _nace(str(industry.get("code") or ""))
            if not nace:
                warn(f"employer.properties.nace2[{j}].code", "not an SN2007 code: dropped")
            break
        fields: dict[str, Any] = dict(
            header=header,
            title=title,
            description=str(props.get("adtext") or ""),
            occupation=occupation,
            employer={
                "name": name,
                "registration_id": str(employer.get("orgnr") or ""),
                "country_code": place or "",
                "nace_code": nace,
            },
            positions=positions,
            place={
                "country_code": place or "",
                "locality": str(location.get("city") or ""),
                "postal_code": str(location.get("postalCode") or ""),
            },
            contract={"type": contract[0], "mobility_type": contract[1], "start_date": start}
            if contract
            else None,
            application_deadline=deadline,
            target_country_codes=self.targets,
        )
        offer = offer_pb2.JobOffer(**fields)
        return problems.result(offer)

    def _occupation(
        self, occupation: common_pb2.Occupation, categories: list[Any], title: str, problems: Problems
    ) -> None:
        for category in categories:
            kind, code = str(category.get("categoryType") or ""), str(category.get("code") or "")
            found = STYRK.fullmatch(code) if kind.startswith("STYRK08") else None
            if found:
                occupation.national_code.CopyFrom(
                    common_pb2.NationalCode(system=kind, code=code, label=str(category.get("name") or ""))
                )
                unit = found[1]
                if self.codelists.is_unit(unit):
                    Resolution(
                        unit, "STYRK-08 is ISCO-08 at four digits", method="national_code", score=1.0
                    ).apply(occupation)
                    return
                problems.error("categoryList", f"STYRK-08 {code}: {unit} is not an ISCO-08 unit group")
                return
        problems.occupation(occupation, self.codelists.resolve_title(title), "properties.jobtitle")

    def write(self, offer: offer_pb2.JobOffer) -> dict[str, Any]:
        """NAV's shape of a JobOffer (what the common schema carries of it)."""
        national = offer.occupation.national_code
        updated = offer.header.updated_at.ToDatetime(tzinfo=UTC).astimezone(OSLO).replace(tzinfo=None)
        out: dict[str, Any] = {
            "uuid": offer.header.record_id.removeprefix("NAV-"),
            "status": "ACTIVE",
            "updated": updated.isoformat(),
            "title": offer.title,
            "employer": {"name": offer.employer.name, "orgnr": offer.employer.registration_id},
            "location": {
                "country": offer.place.country_code,
                "city": offer.place.locality,
                "postalCode": offer.place.postal_code,
            },
            "categoryList": [{"categoryType": national.system, "code": national.code, "name": national.label}]
            if national.code
            else [],
            "properties": {
                "jobtitle": offer.title,
                "adtext": offer.description,
                "positioncount": str(offer.positions),
                "engagementtype": ENGAGEMENT_WORDS.get(offer.contract.type, ""),
            },
        }
        if len(offer.employer.nace_code) == 6:  # a NACE class, "C33.17": SN2007 adds a digit
            out["employer"]["properties"] = {"nace2": [{"code": offer.employer.nace_code[1:] + "0"}]}
        if offer.contract.start_date.year:
            d = offer.contract.start_date
            out["properties"]["starttime"] = f"{d.day:02d}.{d.month:02d}.{d.year:04d}"
        if offer.application_deadline.year:
            out["properties"]["applicationdue"] = date_text(offer.application_deadline)
        return out


def _local(text: str) -> datetime:
    """A NAV time (Norwegian local time unless it says otherwise) as an aware datetime."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=OSLO)


def _country(name: str) -> str | None:
    upper = name.strip().upper()
    if upper in COUNTRIES:
        return COUNTRIES[upper]
    try:
        return str(pycountry.countries.lookup(name.strip()).alpha_2)
    except LookupError:
        return None


def _nace(code: str) -> str:
    """The NACE Rev. 2 class of an SN2007 code ("33.170" → "C33.17"); "" if it is not one."""
    found = SN2007.fullmatch(code.strip())
    if not found:
        return ""
    division = int(found[1])
    section = next((letter for top, letter in SECTIONS if division <= top), "")
    return f"{section}{found[1]}.{found[2]}{found[3]}" if section else ""
