"""EURES HR-XML 3.x XML, the format EURES members exchange (NAV's vacancies and CVs, among
others): ``PositionOpening`` ↔ JobOffer and ``Candidate`` ↔ CandidateProfile + PersonalDetails.

A file holds one document, or a wrapper element holding several (each read in turn). XML is
parsed with defusedxml. A Candidate is read like the Europass 2020 Candidate, which is HR-XML 3
with a Europass namespace (adapters/europass.py), keyed by its DocumentID under the SPE's
subject key. Every coded element carries ``listName``: ``JobCategoryCode listName="ISCO2008"``
is the ISCO-08 group, an ESCO occupation URI is kept, another list (a national classification,
"STYRK08") is kept as the occupation's national code. docs/formats/eures-hrxml.md has the
field table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element  # nosec: a type only
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import common_pb2, offer_pb2, profile_pb2

from adapters.base import Converted, Problem, Problems, keep_resolutions
from adapters.codelists import CodeLists, Resolution
from adapters.europass import EuropassXml, _all, _at, _local, _text
from adapters.hropen import CLOSED, OFFERING, OFFERING_CODES
from adapters.languages import add_language
from adapters.limits import LimitExceeded, dropped_warnings, whole_number, xml_documents, xml_fault
from adapters.people import CEFR_NAMES, NACE, cefr, country, date_text, dotted_date, full_date

HR = "http://www.hr-xml.org/3"
OA = "http://www.openapplications.org/oagis/9"
ISCO_LIST = "ISCO2008"
ESCO_OCCUPATION = "http://data.europa.eu/esco/occupation/"
ESCO_SKILL = "http://data.europa.eu/esco/skill/"
DOCUMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,120}")
# NACE Rev. 2 as NAV writes it ("C33.1.7") and as the schema keeps it ("C33.17").
NAV_NACE = re.compile(r"([A-U])([0-9]{2})\.([0-9])\.([0-9])")
MONTHS = {"month": 1, "year": 12}
DOCUMENTS = ("PositionOpening", "Candidate")
MAX_POSITIONS = (1 << 31) - 1


class EuresHrXml:
    """The EURES HR-XML 3.x adapter."""

    name = "eures-hrxml"

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        target_country_codes: tuple[str, ...] = (),
        subject_key: bytes = b"",
        default_country: str = "",
        **_: Any,
    ) -> None:
        self.codelists = codelists
        self.origin = origin_participant_id
        self.targets = tuple(country(c) for c in target_country_codes)
        # Only candidates need the subject key; a file of vacancies is read without one.
        self.candidates = (
            EuropassXml(codelists, origin_participant_id, subject_key, default_country)
            if subject_key
            else None
        )

    # -- reading ---------------------------------------------------------------------------------

    def read(self, path: Path) -> Iterator[Converted]:
        """The PositionOpenings and Candidates of a file: its root, or its root's children, read one
        at a time (memory holds one document, however many the file has)."""
        where = f"{path}:/"
        count = 0
        root_tag = ""
        try:
            for root, document in xml_documents(path, split=lambda tag: _local(tag) not in DOCUMENTS):
                root_tag = _local(root.tag)
                if _local(document.tag) not in DOCUMENTS:
                    continue
                count += 1
                at = where if document is root else f"{path}:/{root_tag}/{_local(document.tag)}[{count}]"
                if _local(document.tag) == "PositionOpening":
                    yield from dropped_warnings((self.convert_opening(document, at),), document)
                else:
                    yield from dropped_warnings(self.convert_candidate(document, at), document)
        except (LimitExceeded, OSError, ParseError, DefusedXmlException) as exc:
            at = where if count == 0 else f"{path}: after document {count}"
            if isinstance(exc, LimitExceeded):
                reason = f"refused: {exc}; the rest of the file is not read"
            else:
                reason = xml_fault(exc) + ("; documents before it were read" if count else "")
            yield Converted(at, None, (Problem(at, "/", reason),))
            return
        if count == 0:
            yield Converted(
                where, None, (Problem(where, "/", f"<{root_tag}> holds no PositionOpening or Candidate"),)
            )

    def convert_candidate(self, root: Element, where: str) -> Iterator[Converted]:
        if self.candidates is None:
            problem = Problem(
                where, "/", "candidates are keyed by the SPE's subject key: give one (--subject-key-file)"
            )
            yield Converted(where, None, (problem,))
            return
        document = _text(root, "DocumentID")
        if not DOCUMENT_ID.fullmatch(document):
            yield Converted(
                where, None, (Problem(where, "DocumentID", "missing: the candidate cannot be keyed"),)
            )
            return
        yield from self.candidates.convert(root, document, where)

    def convert_opening(self, root: Element, where: str) -> Converted:
        """One PositionOpening to a JobOffer, or the problems that stop it."""
        problems = Problems(where)
        error, warn = problems.error, problems.warn
        document = _text(root, "DocumentID")
        if not DOCUMENT_ID.fullmatch(document):
            error("DocumentID", "missing or not 1-120 characters from [A-Za-z0-9._:-]")
        status = _text(root, "PositionOpeningStatusCode")
        if status in CLOSED:
            error(
                "PositionOpeningStatusCode",
                "the position is closed: withdraw the record instead of publishing it",
            )
        header: dict[str, Any] = {"record_id": document, "origin_participant_id": self.origin, "version": 1}
        valid_from = full_date(root.get("validFrom", ""))
        if valid_from is not None:
            stamp = Timestamp()
            stamp.FromDatetime(datetime(valid_from.year, valid_from.month, valid_from.day, tzinfo=UTC))
            header["version"], header["updated_at"] = stamp.seconds, stamp
        profiles = _all(root, "PositionProfile")
        if len(profiles) > 1:
            warn("PositionProfile[2]", "further position profiles: not carried (one offer a document)")
        p = profiles[0] if profiles else None
        title = " ".join(_text(p, "PositionTitle").split())
        if not title:
            error("PositionProfile/PositionTitle", "missing")
        organization = _at(p, "PositionOrganization")
        employer = _text(organization, "OrganizationIdentifiers", "OrganizationName")
        if not employer:
            error(
                "PositionOrganization/OrganizationIdentifiers/OrganizationName",
                "the hub needs the employer's name",
            )
        address = _at(p, "PositionLocation", "Address")
        place = country(_text(address, "CountryCode"))
        if len(place) != 2:
            error("PositionLocation/Address/CountryCode", "missing or not ISO 3166-1 alpha-2")
        quantity = _text(p, "PositionOpenQuantity")
        positions = whole_number(quantity) or 0
        if positions > MAX_POSITIONS:  # the field is 32 bits: further is no count of positions
            positions = 0
        if not quantity:
            warn("PositionOpenQuantity", "missing: taken as 1 position")
            positions = 1
        elif not positions:
            error("PositionOpenQuantity", "not a positive whole number")
        occupation = common_pb2.Occupation(title=title)
        self._occupation(
            occupation, _all(p, "JobCategoryCode"), title, problems, "PositionProfile/JobCategoryCode"
        )
        contract = None
        offering = _text(p, "PositionOfferingTypeCode")
        if offering in OFFERING:
            contract = offer_pb2.Contract(type=OFFERING[offering][0], mobility_type=OFFERING[offering][1])
        else:
            error(
                "PositionOfferingTypeCode",
                f"{offering or 'missing'}: one of {sorted(OFFERING)} is needed",
            )
        start = dotted_date(
            _text(p, "PositionPeriod", "StartDate", "DateText")
            or _text(p, "PositionPeriod", "StartDate", "FormattedDateTime")
        )
        if start is None and _text(p, "PositionPeriod", "StartDate", "DateText") not in ("", "na"):
            warn("PositionPeriod/StartDate", "not a date: dropped")
        if contract is not None and start is not None:
            contract.start_date.CopyFrom(start)
        deadline = dotted_date(_text(p, "ApplicationCloseDate"))
        if deadline is None and _text(p, "ApplicationCloseDate"):
            warn("ApplicationCloseDate", "not a date: dropped")
        months = 0
        for j, category in enumerate(
            _all(p, "PositionQualifications", "ExperienceSummary", "ExperienceCategory")
        ):
            measure = _at(category, "Measure")
            unit = measure.get("unitCode", "") if measure is not None else ""
            amount = _text(measure)
            if unit in MONTHS and whole_number(amount) is not None:
                months = max(months, int(amount) * MONTHS[unit])
            else:
                warn(f"ExperienceCategory[{j + 1}]/Measure", "not a number of months or years: dropped")
        languages: list[Any] = []
        fields: dict[str, Any] = dict(
            header=header,
            title=title,
            description=_text(p, "PositionFormattedDescription", "Content"),
            occupation=occupation,
            employer={
                "name": employer,
                "registration_id": _text(organization, "OrganizationIdentifiers", "OrganizationLegalID"),
                "country_code": place if len(place) == 2 else "",
                "nace_code": self._nace(_text(organization, "IndustryCode"), problems),
            },
            positions=positions,
            place={
                "country_code": place if len(place) == 2 else "",
                "locality": _text(address, "CityName"),
                "postal_code": _text(address, "PostalCode"),
            },
            contract=contract,
            required_experience_months=months,
            application_deadline=deadline,
            target_country_codes=self.targets,
        )
        offer = offer_pb2.JobOffer(**fields)
        for j, competency in enumerate(_all(p, "PositionQualifications", "PositionCompetency")):
            code = _text(competency, "CompetencyID")
            if _text(competency, "TaxonomyID") == "language":
                levels = [
                    cefr(_text(d, "Score", "ScoreText")) for d in _all(competency, "CompetencyDimension")
                ]
                add_language(
                    offer.required_languages, code, levels or [None], problems, f"PositionCompetency[{j + 1}]"
                )
            elif code.startswith(ESCO_SKILL):
                offer.required_skills.add(esco_uri=code, label=_text(competency, "CompetencyName"))
            elif _text(competency, "CompetencyName"):
                offer.required_skills.add(label=_text(competency, "CompetencyName"))
        del languages
        for j, _ in enumerate(_all(p, "WorkingLanguageCode")):
            warn(
                f"WorkingLanguageCode[{j + 1}]",
                "a working language has no CEFR level: not carried as a requirement",
            )
        if _text(p, "PositionScheduleTypeCode"):
            warn(
                "PositionScheduleTypeCode",
                "full or part time without hours: not carried (the schema keeps weekly hours)",
            )
        return problems.result(offer)

    def _occupation(
        self,
        occupation: common_pb2.Occupation,
        codes: list[Element],
        title: str,
        problems: Problems,
        where: str,
    ) -> None:
        isco = esco = ""
        for code in codes:
            listed, value = code.get("listName", ""), _text(code)
            if listed == ISCO_LIST and not isco:
                isco = value
            elif value.startswith(ESCO_OCCUPATION) and not esco:
                esco = value
            elif value and not occupation.national_code.code:
                occupation.national_code.CopyFrom(
                    common_pb2.NationalCode(system=listed, code=value, label=title)
                )
        if esco:
            occupation.esco_uri = esco
        if isco:
            if self.codelists.is_unit(isco) or isco in self.codelists.isco_groups:
                Resolution(isco, "ISCO-08 code", method="isco_code", score=1.0).apply(occupation)
                return
            problems.error(where, f"{isco} is not an ISCO-08 group")
            return
        resolution = self.codelists.resolve_esco(esco) if esco else self.codelists.resolve_title(title)
        problems.occupation(occupation, resolution, where)

    @staticmethod
    def _nace(code: str, problems: Problems) -> str:
        found = NAV_NACE.fullmatch(code)
        value = f"{found[1]}{found[2]}.{found[3]}{found[4]}" if found else code
        if value and not NACE.fullmatch(value):
            problems.warn("PositionOrganization/IndustryCode", "not a NACE Rev. 2 code: dropped")
            return ""
        return value

    # -- writing ---------------------------------------------------------------------------------

    def write(self, record: Any) -> str:
        """The HR-XML 3.2 form of a JobOffer (PositionOpening) or of a CandidateProfile (Candidate,
        its professional part)."""
        if isinstance(record, offer_pb2.JobOffer):
            return write_opening(record)
        if isinstance(record, profile_pb2.CandidateProfile):
            return write_candidate(record)
        raise TypeError(f"no HR-XML form for {type(record).__name__}")

    def round_trip(self, record: Any, where: str) -> Any:
        """Common → HR-XML → common, for the conformance check (personal details are not written
        back: the national identifier that keys them never leaves the SPE)."""
        if isinstance(record, profile_pb2.PersonalDetails):
            return record
        root = fromstring(self.write(record))
        if isinstance(record, offer_pb2.JobOffer):
            again: Any = self.convert_opening(root, where).record
            if again is None:
                return None
            again.header.CopyFrom(record.header)
            return keep_resolutions(record, again)
        assert self.candidates is not None
        results = list(self.candidates.convert(root, "round-trip", where))
        profile: Any = results[0].record if results else None
        if profile is None:
            return None
        profile.header.CopyFrom(record.header)
        profile.consent_record_id = record.consent_record_id
        return keep_resolutions(record, profile)


def _x(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def write_opening(o: offer_pb2.JobOffer) -> str:
    isco = (
        f'<JobCategoryCode listName="{ISCO_LIST}" listVersionID="2008">{_x(o.occupation.isco08_code)}</JobCategoryCode>'
        if o.occupation.isco08_code
        else ""
    )
    esco = f"<JobCategoryCode>{_x(o.occupation.esco_uri)}</JobCategoryCode>" if o.occupation.esco_uri else ""
    national = (
        f'<JobCategoryCode listName="{_x(o.occupation.national_code.system)}">{_x(o.occupation.national_code.code)}</JobCategoryCode>'
        if o.occupation.national_code.code
        else ""
    )
    qualifications = ""
    if o.required_experience_months:
        months = o.required_experience_months
        unit, amount = ("year", months // 12) if months % 12 == 0 else ("month", months)
        qualifications += (
            "<ExperienceSummary><ExperienceCategory>"
            f'<Measure unitCode="{unit}">{amount}</Measure></ExperienceCategory></ExperienceSummary>'
        )
    for lang in o.required_languages:
        qualifications += (
            f"<PositionCompetency><CompetencyID>{_x(lang.language_code)}</CompetencyID><TaxonomyID>language</TaxonomyID>"
            f"<CompetencyDimension><CompetencyDimensionTypeCode>CEF-Overall</CompetencyDimensionTypeCode>"
            f"<Score><ScoreText>{CEFR_NAMES[lang.level]}</ScoreText></Score></CompetencyDimension></PositionCompetency>"
        )
    for skill in o.required_skills:
        qualifications += (
            f"<PositionCompetency><CompetencyID>{_x(skill.esco_uri)}</CompetencyID>"
            f"<CompetencyName>{_x(skill.label)}</CompetencyName><TaxonomyID>other</TaxonomyID></PositionCompetency>"
        )
    start = (
        f"<PositionPeriod><StartDate><FormattedDateTime>{date_text(o.contract.start_date)}</FormattedDateTime></StartDate></PositionPeriod>"
        if o.contract.start_date.year
        else ""
    )
    deadline = (
        f"<ApplicationCloseDate>{date_text(o.application_deadline)}</ApplicationCloseDate>"
        if o.application_deadline.year
        else ""
    )
    valid_from = (
        f' validFrom="{o.header.updated_at.ToDatetime(tzinfo=UTC).date().isoformat()}"'
        if o.header.HasField("updated_at")
        else ""
    )
    return (
        f'<PositionOpening xmlns="{HR}" xmlns:oa="{OA}" majorVersionID="3" minorVersionID="2"{valid_from}>'
        f"<DocumentID>{_x(o.header.record_id)}</DocumentID>"
        "<PositionOpeningStatusCode>Active</PositionOpeningStatusCode>"
        "<PositionProfile>"
        f"<PositionTitle>{_x(o.title)}</PositionTitle>"
        "<PositionLocation><Address>"
        f"<oa:CityName>{_x(o.place.locality)}</oa:CityName><CountryCode>{_x(o.place.country_code)}</CountryCode>"
        f"<oa:PostalCode>{_x(o.place.postal_code)}</oa:PostalCode></Address></PositionLocation>"
        "<PositionOrganization><OrganizationIdentifiers>"
        f"<OrganizationName>{_x(o.employer.name)}</OrganizationName>"
        f"<OrganizationLegalID>{_x(o.employer.registration_id)}</OrganizationLegalID>"
        f"</OrganizationIdentifiers><IndustryCode>{_x(o.employer.nace_code)}</IndustryCode></PositionOrganization>"
        f"<PositionOpenQuantity>{o.positions}</PositionOpenQuantity>"
        f"{isco}{esco}{national}"
        f"<PositionOfferingTypeCode>{OFFERING_CODES.get(o.contract.type, '')}</PositionOfferingTypeCode>"
        f"<PositionQualifications>{qualifications}</PositionQualifications>"
        f"<PositionFormattedDescription><Content>{_x(o.description)}</Content></PositionFormattedDescription>"
        f"{start}{deadline}"
        "</PositionProfile></PositionOpening>"
    )


def write_candidate(p: profile_pb2.CandidateProfile) -> str:
    """The professional part of a profile as an HR-XML Candidate: what adapters/europass.py reads
    back from one (the person's identity is not written: it never leaves its personal details)."""
    from adapters.europass import write_candidate_profile

    return write_candidate_profile(p, HR)
