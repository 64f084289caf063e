"""Europass XML CVs → the candidate's two records (CandidateProfile and PersonalDetails), and back.

Reads the Europass CV of schema v3.x (``SkillsPassport``, what the Europass
editor saved until 2020) and the Europass ``Candidate`` of 2020 onwards
(HR-XML 3 with the eures extension). XML is parsed with defusedxml: a CV is
untrusted input, and entity expansion or external entities are refused.

A CV holds no identifier of the person, so the SPE names each file by its own
dossier number: the file name (without extension) is keyed with the SPE's
subject key, like every other identifier. The occupation sought is the
headline resolved through ESCO and ROME titles, or an ESCO occupation URI;
without a headline, the most recent position is taken and a warning says so.
A language's level is the lowest of its five CEFR dimensions. Free-text skill
sections (communication, computer, other) are not carried over, with a
warning. See docs/formats/europass.md for every field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement  # nosec: building a tree, no parsing

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from spehub.v1 import common_pb2, profile_pb2

from adapters.base import Converted, Problem, Problems, keep_resolutions
from adapters.codelists import CodeLists, Resolution
from adapters.languages import add_language
from adapters.limits import (
    LimitExceeded,
    dropped_warnings,
    json_fault,
    load_json,
    utf8_start,
    whole_number,
    xml_documents,
    xml_fault,
)
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
    e164,
    nationality,
    period_date,
)

V3 = "http://europass.cedefop.europa.eu/Europass"
V4 = "http://www.europass.eu/1.0"
HR = "http://www.hr-xml.org/3"  # EURES HR-XML 3.x: the Europass Candidate's own vocabulary
ESCO_OCCUPATION = "http://data.europa.eu/esco/occupation/"
LICENCE = re.compile(r"[A-Z][A-Z0-9]{0,3}")
FREE_TEXT_SKILLS = ("Communication", "Organisational", "JobRelated", "Computer", "Other")


def xml_root(path: Path, where: str) -> Element | Converted:
    """The root element of an XML file (one record) parsed with defusedxml within the limits of
    adapters/limits.py, or the refusal saying why not."""
    try:
        ((root, _),) = xml_documents(path, split=lambda _: False)
    except LimitExceeded as exc:
        return Converted(where, None, (Problem(where, "/", f"refused: {exc}"),))
    except (OSError, ParseError, DefusedXmlException) as exc:
        return Converted(where, None, (Problem(where, "/", xml_fault(exc)),))
    return root


# Europass v3 JSON writes a repeated element as an array under its own name; the XML wraps the
# repetitions in a list element ("WorkExperience": [...] is WorkExperienceList/WorkExperience).
_JSON_LISTS = {"WorkExperience", "Education", "MotherTongue", "ForeignLanguage", "Telephone", "Nationality"}
_JSON_DATES = {"Birthdate", "From", "To"}


def json_root(path: Path, where: str) -> Element | Converted:
    """A Europass v3 JSON CV (the editor's JSON export) as the element tree its XML form gives:
    the same reader then reads both. Or the refusal saying why it cannot be read."""
    try:
        with path.open("rb") as handle:
            not_utf8 = utf8_start(handle)
            if not_utf8:
                return Converted(where, None, (Problem(where, "/", not_utf8),))
            data = load_json(handle)
        document = data["SkillsPassport"]
    except LimitExceeded as exc:
        return Converted(where, None, (Problem(where, "/", f"refused: {exc}"),))
    except OSError as exc:
        return Converted(where, None, (Problem(where, "/", f"not readable ({type(exc).__name__})"),))
    except ValueError as exc:
        return Converted(where, None, (Problem(where, "/", json_fault(exc)),))
    except (KeyError, TypeError):
        reason = "not a Europass v3 JSON CV (no SkillsPassport object)"
        return Converted(where, None, (Problem(where, "/", reason),))
    root = Element(f"{{{V3}}}SkillsPassport")
    _json_children(root, document)
    return root


def _json_children(parent: Element, value: Any) -> None:
    if not isinstance(value, dict):
        parent.text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return
    for key, item in value.items():
        if key in _JSON_DATES and isinstance(item, dict):  # {"Year": 1975, "Month": 3} → attributes
            date = SubElement(parent, key)
            for part, prefix in (("Year", ""), ("Month", "--"), ("Day", "---")):
                number = item.get(part)
                number = whole_number(number) if isinstance(number, str) else number
                if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= 9999:
                    date.set(part.lower(), f"{prefix}{number:0{4 if part == 'Year' else 2}d}")
            continue
        items = item if isinstance(item, list) else [item]
        holder = SubElement(parent, f"{key}List") if key in _JSON_LISTS and isinstance(item, list) else parent
        name = "Licence" if key == "Description" and parent.tag == "Driving" else key
        if name == "Licence":
            holder = SubElement(parent, "Description")
        for one in items:
            _json_children(SubElement(holder, name), one)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: Element | None, name: str) -> list[Element]:
    """Direct children called ``name``, whatever their namespace (Europass mixes hr:, oa:, eures:)."""
    return [c for c in el if _local(c.tag) == name] if el is not None else []


def _at(el: Element | None, *path: str) -> Element | None:
    """The first element down ``path`` (local names), or None."""
    for name in path:
        found = _children(el, name)
        if not found:
            return None
        el = found[0]
    return el


def _all(el: Element | None, *path: str) -> list[Element]:
    """Every element down ``path``: all matches at the last step, the first at each earlier one."""
    parent = _at(el, *path[:-1]) if len(path) > 1 else el
    return _children(parent, path[-1])


def _text(el: Element | None, *path: str) -> str:
    found = _at(el, *path) if path else el
    return (found.text or "").strip() if found is not None else ""


class EuropassXml:
    """The Europass CV adapter."""

    name = "europass-xml"

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        subject_key: bytes = b"",
        default_country: str = "",
        **_: Any,
    ) -> None:
        self.codelists = codelists
        self.origin = origin_participant_id
        self.pseudonyms = Pseudonyms(subject_key)
        self.default_country = country(default_country)

    def read(self, path: Path) -> Iterator[Converted]:
        where = f"{path}:/"
        root = json_root(path, where) if path.suffix.lower() == ".json" else xml_root(path, where)
        if isinstance(root, Converted):
            yield root
            return
        yield from dropped_warnings(self.convert(root, path.stem, where), root)

    def convert(self, root: Element, dossier: str, where: str) -> Iterator[Converted]:
        """The two records of one CV, or one result with the problems that stop it."""
        problems = Problems(where)
        profile, personal = candidate_pair(self.origin, self.pseudonyms(dossier))
        kind = _text(root, "DocumentInfo", "DocumentType")
        if root.tag == f"{{{V3}}}SkillsPassport" and kind not in ("ECV", "ESP"):
            problems.error(
                "DocumentInfo/DocumentType", f"{kind or 'missing'}: only a Europass CV (ECV) holds a profile"
            )
        elif root.tag == f"{{{V3}}}SkillsPassport":
            self._v3(_at(root, "LearnerInfo"), profile, personal, problems)
        elif root.tag in (f"{{{V4}}}Candidate", f"{{{HR}}}Candidate"):
            self._v4(root, profile, personal, problems)
        else:
            problems.error(
                "/",
                "the Europass format before 2013 (v2): open it in the Europass editor and save it as a v3 CV"
                if _local(root.tag).lower() == "learnerinfo"
                else f"<{_local(root.tag)}> is neither a Europass SkillsPassport (v3) nor a Candidate",
            )
        yield from problems.results(profile, personal)

    # -- Europass v3 (SkillsPassport) -------------------------------------------------------------

    def _v3(
        self,
        info: Element | None,
        profile: profile_pb2.CandidateProfile,
        personal: profile_pb2.PersonalDetails,
        problems: Problems,
    ) -> None:
        ident = _at(info, "Identification")
        contact = _at(ident, "ContactInfo")
        residence = self._residence(_text(contact, "Address", "Contact", "Country", "Code"), problems)
        profile.residence_country_code = residence
        personal.given_names = _text(ident, "PersonName", "FirstName")
        personal.family_name = _text(ident, "PersonName", "Surname")
        if not personal.family_name:
            problems.error("LearnerInfo/Identification/PersonName/Surname", "missing")
        born = _at(ident, "Demographics", "Birthdate")
        if born is not None:
            text = f"{born.get('year', '')}-{born.get('month', '').lstrip('-')}-{born.get('day', '').lstrip('-')}"
            birth(personal, text.rstrip("-"), problems, "LearnerInfo/Identification/Demographics/Birthdate")
        for held in _all(ident, "Demographics", "NationalityList", "Nationality"):
            nationality(personal, _text(held, "Code"), problems, "Demographics/Nationality")
        for email in _all(contact, "Email"):
            if _text(email, "Contact"):
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_EMAIL, value=_text(email, "Contact"))
        for j, phone in enumerate(_all(contact, "TelephoneList", "Telephone")):
            self._phone(
                personal, _text(phone, "Contact"), residence, problems, f"TelephoneList/Telephone[{j + 1}]"
            )

        jobs = _all(info, "WorkExperienceList", "WorkExperience")
        for j, job in enumerate(jobs):
            period = _at(job, "Period")
            w = profile.work_experiences.add(
                country_code=country(
                    _text(job, "Employer", "ContactInfo", "Address", "Contact", "Country", "Code")
                ),
                description=_text(job, "Activities").replace("<br />", "\n"),
            )
            sector = _text(job, "Employer", "Sector", "Code")
            if sector and NACE.fullmatch(sector):
                w.nace_code = sector
            elif sector:
                problems.warn(f"WorkExperience[{j + 1}]/Employer/Sector", "not a NACE Rev. 2 code: dropped")
            self._period(
                w, _at(period, "From"), _at(period, "To"), problems, f"WorkExperience[{j + 1}]/Period"
            )
            title, code = _text(job, "Position", "Label"), _text(job, "Position", "Code")
            resolution = self._resolve(title, code)
            if resolution.isco08:
                w.occupation.isco08_code, w.occupation.title = resolution.isco08, title
                w.occupation.esco_uri = code if code.startswith(ESCO_OCCUPATION) else ""
            elif title:
                problems.warn(
                    f"WorkExperience[{j + 1}]/Position", f"occupation not resolved ({resolution.how})"
                )
        headline = _text(info, "Headline", "Description", "Label")
        latest = _text(jobs[0], "Position", "Label") if jobs else ""
        latest_code = _text(jobs[0], "Position", "Code") if jobs else ""
        self._sought(
            profile, headline, _text(info, "Headline", "Description", "Code"), latest, latest_code, problems
        )

        for j, school in enumerate(_all(info, "EducationList", "Education")):
            if not _text(school, "Title"):
                problems.warn(f"Education[{j + 1}]", "no title: not carried over")
                continue
            q = profile.qualifications.add(title=_text(school, "Title"))
            level = _text(school, "Level", "Code")
            if re.fullmatch(r"[1-8]", level):
                q.eqf_level = int(level)  # type: ignore[assignment]
            q.awarding_country_code = country(
                _text(school, "Organisation", "ContactInfo", "Address", "Contact", "Country", "Code")
            )
        linguistic = _at(info, "Skills", "Linguistic")
        for j, tongue in enumerate(_all(linguistic, "MotherTongueList", "MotherTongue")):
            written = _text(tongue, "Description", "Code") or _text(tongue, "Description", "Label")
            self._language(profile, written, [7], problems, f"MotherTongue[{j + 1}]")
        for j, foreign in enumerate(_all(linguistic, "ForeignLanguageList", "ForeignLanguage")):
            levels = [cefr(_text(d)) for d in list(_at(foreign, "ProficiencyLevel") or [])]
            self._language(
                profile, _text(foreign, "Description", "Code"), levels, problems, f"ForeignLanguage[{j + 1}]"
            )
        for licence in _all(info, "Skills", "Driving", "Description", "Licence"):
            self._licence(profile, _text(licence), problems)
        for section in FREE_TEXT_SKILLS:
            if _text(info, "Skills", section, "Description"):
                problems.warn(
                    f"Skills/{section}", "free text: not carried over (the hub exchanges coded skills)"
                )

    # -- Europass Candidate (2020 onwards) ----------------------------------------------------------

    def _v4(
        self,
        root: Element,
        profile: profile_pb2.CandidateProfile,
        personal: profile_pb2.PersonalDetails,
        problems: Problems,
    ) -> None:
        person = _at(root, "CandidatePerson")
        residence_code = ""
        for channel in _all(person, "Communication"):
            residence_code = residence_code or _text(channel, "Address", "CountryCode")
        residence = self._residence(residence_code, problems)
        profile.residence_country_code = residence
        personal.given_names = _text(person, "PersonName", "GivenName")
        personal.family_name = _text(person, "PersonName", "FamilyName")
        if not personal.family_name:
            problems.error("CandidatePerson/PersonName/FamilyName", "missing")
        if _text(person, "BirthDate"):
            birth(personal, _text(person, "BirthDate"), problems, "CandidatePerson/BirthDate")
        for held in _all(person, "NationalityCode"):
            nationality(personal, _text(held), problems, "CandidatePerson/NationalityCode")
        for j, channel in enumerate(_all(person, "Communication")):
            kind = _text(channel, "ChannelCode")
            if kind == "Email" and _text(channel, "URI"):
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_EMAIL, value=_text(channel, "URI"))
            elif kind in ("Telephone", "MobileTelephone"):
                self._phone(
                    personal, _text(channel, "DialNumber"), residence, problems, f"Communication[{j + 1}]"
                )
        primary = _text(person, "PrimaryLanguageCode")
        if primary:
            self._language(profile, primary, [7], problems, "CandidatePerson/PrimaryLanguageCode")

        candidate = _at(root, "CandidateProfile")
        profile.summary = _text(candidate, "ExecutiveSummary")
        latest_title = latest_uri = ""
        for j, employer in enumerate(_all(candidate, "EmploymentHistory", "EmployerHistory")):
            for position in _all(employer, "PositionHistory"):
                title_el = _at(position, "PositionTitle")
                uri = title_el.get("languageID", "") if title_el is not None else ""
                uri = uri if uri.startswith(ESCO_OCCUPATION) else ""
                # HR-XML writes the position's group as a JobCategoryCode of the ISCO2008 list.
                isco = next(
                    (_text(c) for c in _all(position, "JobCategoryCode") if c.get("listName") == "ISCO2008"),
                    "",
                )
                title = " ".join(_text(title_el).split())
                w = profile.work_experiences.add(
                    country_code=country(
                        _text(position, "Country")
                        or _text(employer, "OrganizationContact", "Communication", "Address", "CountryCode")
                    )
                )
                start = _at(position, "EmploymentPeriod", "StartDate", "FormattedDateTime")
                end = _at(position, "EmploymentPeriod", "EndDate", "FormattedDateTime")
                self._period(
                    w, start, end, problems, f"EmployerHistory[{j + 1}]/PositionHistory/EmploymentPeriod"
                )
                resolution = self._resolve(title, isco or uri)
                if resolution.isco08:
                    w.occupation.isco08_code, w.occupation.title = resolution.isco08, title
                    w.occupation.esco_uri = uri
                latest_title, latest_uri = latest_title or title, latest_uri or isco or uri
        for j, competency in enumerate(_all(candidate, "PersonQualifications", "PersonCompetency")):
            code = _text(competency, "CompetencyID")
            if _text(competency, "TaxonomyID") == "language":
                levels = [
                    cefr(_text(d, "Score", "ScoreText")) for d in _all(competency, "CompetencyDimension")
                ]
                self._language(profile, code, levels, problems, f"PersonCompetency[{j + 1}]")
            elif code.startswith("http://data.europa.eu/esco/skill/"):
                profile.skills.add(esco_uri=code, label=_text(competency, "CompetencyName"))
            elif _text(competency, "CompetencyName"):
                profile.skills.add(label=_text(competency, "CompetencyName"))
        for j, school in enumerate(_all(candidate, "EducationHistory", "EducationOrganizationAttendance")):
            title = _text(school, "EducationDegree", "DegreeName")
            if not title:
                problems.warn(f"EducationOrganizationAttendance[{j + 1}]", "no degree name: not carried over")
                continue
            q = profile.qualifications.add(title=title)
            level = next(
                (_text(c) for c in _all(school, "EducationLevelCode") if c.get("listName") == "EQF"), ""
            )
            if re.fullmatch(r"[1-8]", level):
                q.eqf_level = int(level)  # type: ignore[assignment]
            q.awarding_country_code = country(_text(school, "ReferenceLocation", "CountryCode"))
        for licence in _all(candidate, "Licenses", "License"):
            self._licence(profile, _text(licence, "LicenseTypeCode"), problems)
        # What the candidate seeks, where EURES HR-XML says it (NAV's CV export, for one).
        wanted = _at(root, "CandidatePositionPreferences") or _at(candidate, "CandidatePositionPreferences")
        for location in _all(wanted, "PreferredLocation"):
            code = country(_text(location, "ReferenceLocation", "CountryCode"))
            if len(code) == 2 and code not in profile.desired_country_codes:
                profile.desired_country_codes.append(code)
        for offering in _all(wanted, "PositionOfferingTypeCode"):
            mobility = MOBILITY_BY_OFFERING.get(_text(offering))
            if mobility is not None and mobility not in profile.mobility_types:
                profile.mobility_types.append(mobility)
        category = _at(wanted, "JobCategory")
        codes = _all(category, "JobCategoryCode")
        sought = next((_text(c) for c in codes if c.get("listName") == "ISCO2008"), "") or next(
            (_text(c) for c in codes if _text(c).startswith(ESCO_OCCUPATION)), ""
        )
        if sought or _text(category, "JobCategoryName"):
            self._sought(profile, _text(category, "JobCategoryName"), sought, "", "", problems)
        else:
            self._sought(profile, "", "", latest_title, latest_uri, problems)

    # -- shared -------------------------------------------------------------------------------------

    def _residence(self, code: str, problems: Problems) -> str:
        value = country(code) or self.default_country
        if len(value) != 2:
            problems.error("Address/Country", "no residence country in the CV and no default country given")
        return value

    def _sought(
        self,
        profile: profile_pb2.CandidateProfile,
        headline: str,
        headline_code: str,
        latest: str,
        latest_code: str,
        problems: Problems,
    ) -> None:
        """The occupation sought: the headline, else the most recent position (with a warning)."""
        occupation = profile.occupations.add()
        if headline or headline_code:
            title, code, where = headline, headline_code, "Headline"
        elif latest or latest_code:
            title, code, where = latest, latest_code, "WorkExperience"
            problems.warn(
                "Headline", "no job applied for: the most recent position is taken as the one sought"
            )
        else:
            problems.error("Headline", "the CV says no job applied for and no position held")
            return
        occupation.title = title
        occupation.esco_uri = code if code.startswith(ESCO_OCCUPATION) else ""
        problems.occupation(occupation, self._resolve(title, code), where)

    def _resolve(self, title: str, code: str) -> Resolution:
        """An occupation from its code (an ESCO URI or an ISCO-08 unit group) if given, else its title."""
        if code.startswith(ESCO_OCCUPATION):
            return self.codelists.resolve_esco(code)
        if code:
            if self.codelists.is_unit(code) or code in self.codelists.isco_groups:
                return Resolution(code, "ISCO-08 code", method="isco_code", score=1.0)
            return Resolution(None, "the occupation code is neither an ESCO URI nor an ISCO-08 group")
        return self.codelists.resolve_title(title)

    def _period(
        self,
        w: profile_pb2.WorkExperience,
        start: Element | None,
        end: Element | None,
        problems: Problems,
        where: str,
    ) -> None:
        for el, is_end, target in ((start, False, w.period.start), (end, True, w.period.end)):
            if el is None:
                continue
            if el.get("year"):  # v3: <From year="2002" month="--08"/>
                text = el.get("year", "") + ("-" + el.get("month", "").lstrip("-") if el.get("month") else "")
                text += "-" + el.get("day", "").lstrip("-") if el.get("month") and el.get("day") else ""
            else:
                text = _text(el)
            date = period_date(text, end=is_end)
            if date is None:
                problems.warn(where, "not a date (YYYY, YYYY-MM or YYYY-MM-DD): this bound is dropped")
            else:
                target.CopyFrom(date)

    def _phone(
        self, personal: profile_pb2.PersonalDetails, raw: str, residence: str, problems: Problems, where: str
    ) -> None:
        number = e164(raw, residence)
        if number is None:
            problems.warn(
                where, f"not a valid phone number for {residence or 'the residence country'}: dropped"
            )
        else:
            personal.contacts.add(type=profile_pb2.CONTACT_TYPE_PHONE, value=number)

    def _language(
        self,
        profile: profile_pb2.CandidateProfile,
        code: str,
        levels: list[int | None],
        problems: Problems,
        where: str,
    ) -> None:
        add_language(profile.languages, code, levels, problems, where)  # ISO 639-2/3 codes too ("ara")

    def _licence(self, profile: profile_pb2.CandidateProfile, category: str, problems: Problems) -> None:
        if LICENCE.fullmatch(category):
            profile.driving_licence_categories.append(category)
        else:
            problems.warn("Driving/Licence", "not a driving licence category such as 'B' or 'CE': dropped")

    # -- back to Europass (v3) ----------------------------------------------------------------------

    def write(self, record: Any) -> str:
        """The Europass v3 XML of a profile (the professional part) or of personal details (identification)."""
        if isinstance(record, profile_pb2.PersonalDetails):
            return _document(_identification(record, ""), "")
        if isinstance(record, profile_pb2.CandidateProfile):
            return _document(_identification(None, record.residence_country_code), _professional(record))
        raise TypeError(f"no Europass form for {type(record).__name__}")

    def round_trip(self, record: Any, where: str) -> Any:
        """Common → Europass → common, for the conformance check."""
        root = fromstring(self.write(record))
        again = profile_pb2.CandidateProfile() if isinstance(record, profile_pb2.CandidateProfile) else None
        personal = profile_pb2.PersonalDetails()
        problems = Problems(where)
        if again is not None:
            self._v3(_at(root, "LearnerInfo"), again, personal, problems)
            again.header.CopyFrom(record.header)
            again.consent_record_id = record.consent_record_id
            return keep_resolutions(record, again)
        holder = profile_pb2.CandidateProfile()
        self._v3(_at(root, "LearnerInfo"), holder, personal, problems)
        personal.header.CopyFrom(record.header)
        personal.profile_record_id, personal.consent_record_id = (
            record.profile_record_id,
            record.consent_record_id,
        )
        return personal


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _identification(d: profile_pb2.PersonalDetails | None, residence: str) -> str:
    parts = []
    if d is not None:
        parts.append(
            f"<PersonName><FirstName>{_escape(d.given_names)}</FirstName>"
            f"<Surname>{_escape(d.family_name)}</Surname></PersonName>"
        )
    contact = (
        f"<Address><Contact><Country><Code>{residence}</Code></Country></Contact></Address>"
        if residence
        else ""
    )
    if d is not None:
        for c in d.contacts:
            if c.type == profile_pb2.CONTACT_TYPE_EMAIL:
                contact += f"<Email><Contact>{_escape(c.value)}</Contact></Email>"
        phones = "".join(
            f"<Telephone><Contact>{_escape(c.value)}</Contact></Telephone>"
            for c in d.contacts
            if c.type == profile_pb2.CONTACT_TYPE_PHONE
        )
        contact += f"<TelephoneList>{phones}</TelephoneList>" if phones else ""
    parts.append(f"<ContactInfo>{contact}</ContactInfo>")
    if d is not None:
        demographics = ""
        if d.HasField("birth_date"):
            b = d.birth_date
            demographics += f'<Birthdate year="{b.year:04d}" month="--{b.month:02d}" day="---{b.day:02d}"/>'
        elif d.birth_year:
            demographics += f'<Birthdate year="{d.birth_year:04d}"/>'
        if d.nationality_country_codes:
            demographics += (
                "<NationalityList>"
                + "".join(f"<Nationality><Code>{c}</Code></Nationality>" for c in d.nationality_country_codes)
                + "</NationalityList>"
            )
        parts.append(f"<Demographics>{demographics}</Demographics>")
    return "<Identification>" + "".join(parts) + "</Identification>"


def _v3_date(tag: str, d: common_pb2.Date) -> str:
    return f'<{tag} year="{d.year:04d}" month="--{d.month:02d}" day="---{d.day:02d}"/>'


def _professional(p: profile_pb2.CandidateProfile) -> str:
    occ = p.occupations[0]
    out = (
        f"<Headline><Description><Code>{occ.esco_uri or occ.isco08_code}</Code>"
        f"<Label>{_escape(occ.title)}</Label></Description></Headline>"
    )
    jobs = ""
    for w in p.work_experiences:
        period = (_v3_date("From", w.period.start) if w.period.HasField("start") else "") + (
            _v3_date("To", w.period.end) if w.period.HasField("end") else ""
        )
        contact = (
            f"<ContactInfo><Address><Contact><Country><Code>{w.country_code}</Code></Country>"
            "</Contact></Address></ContactInfo>"
            if w.country_code
            else ""
        )
        sector = f"<Sector><Code>{w.nace_code}</Code></Sector>" if w.nace_code else ""
        country_part = f"<Employer>{contact}{sector}</Employer>" if contact or sector else ""
        jobs += (
            f"<WorkExperience><Period>{period}</Period>"
            f"<Position><Code>{w.occupation.esco_uri or w.occupation.isco08_code}</Code>"
            f"<Label>{_escape(w.occupation.title)}</Label></Position>"
            f"<Activities>{_escape(w.description)}</Activities>{country_part}</WorkExperience>"
        )
    out += f"<WorkExperienceList>{jobs}</WorkExperienceList>"
    schools = ""
    for q in p.qualifications:
        level = f"<Level><Code>{q.eqf_level}</Code></Level>" if q.eqf_level else ""
        where = (
            f"<Organisation><ContactInfo><Address><Contact><Country><Code>{q.awarding_country_code}</Code>"
            "</Country></Contact></Address></ContactInfo></Organisation>"
            if q.awarding_country_code
            else ""
        )
        schools += f"<Education><Title>{_escape(q.title)}</Title>{level}{where}</Education>"
    out += f"<EducationList>{schools}</EducationList>"
    tongues = "".join(
        f"<MotherTongue><Description><Code>{lang.language_code}</Code></Description></MotherTongue>"
        for lang in p.languages
        if lang.level == 7
    )
    foreign = "".join(
        f"<ForeignLanguage><Description><Code>{lang.language_code}</Code></Description><ProficiencyLevel>"
        + "".join(
            f"<{d}>{CEFR_NAMES[lang.level]}</{d}>"
            for d in ("Listening", "Reading", "SpokenInteraction", "SpokenProduction", "Writing")
        )
        + "</ProficiencyLevel></ForeignLanguage>"
        for lang in p.languages
        if lang.level != 7
    )
    licences = "".join(f"<Licence>{c}</Licence>" for c in p.driving_licence_categories)
    out += (
        f"<Skills><Linguistic><MotherTongueList>{tongues}</MotherTongueList>"
        f"<ForeignLanguageList>{foreign}</ForeignLanguageList></Linguistic>"
        f"<Driving><Description>{licences}</Description></Driving></Skills>"
    )
    return out


def write_candidate_profile(p: profile_pb2.CandidateProfile, namespace: str) -> str:
    """The professional part of a profile as an HR-XML 3 Candidate (``namespace``: HR-XML's, or
    Europass's), with what ``EuropassXml._v4`` reads back: residence, the occupation sought with
    desired countries and mobility, positions held, education, languages, skills, licences."""
    occ = p.occupations[0] if p.occupations else common_pb2.Occupation()
    codes = (
        f'<JobCategoryCode listName="ISCO2008">{occ.isco08_code}</JobCategoryCode>' if occ.isco08_code else ""
    ) + (f"<JobCategoryCode>{_escape(occ.esco_uri)}</JobCategoryCode>" if occ.esco_uri else "")
    wanted = (
        "".join(
            f"<PreferredLocation><ReferenceLocation><CountryCode>{c}</CountryCode></ReferenceLocation></PreferredLocation>"
            for c in p.desired_country_codes
        )
        + f"<JobCategory>{codes}<JobCategoryName>{_escape(occ.title)}</JobCategoryName></JobCategory>"
        + "".join(
            f"<PositionOfferingTypeCode>{OFFERING_BY_MOBILITY[m]}</PositionOfferingTypeCode>"
            for m in p.mobility_types
            if m in OFFERING_BY_MOBILITY
        )
    )
    jobs = ""
    for w in p.work_experiences:
        period = "".join(
            f"<{name}><FormattedDateTime>{d.year:04d}-{d.month:02d}-{d.day:02d}</FormattedDateTime></{name}>"
            for name, d, present in (
                ("StartDate", w.period.start, w.period.HasField("start")),
                ("EndDate", w.period.end, w.period.HasField("end")),
            )
            if present
        )
        uri = f' languageID="{_escape(w.occupation.esco_uri)}"' if w.occupation.esco_uri else ""
        isco = (
            f'<JobCategoryCode listName="ISCO2008">{w.occupation.isco08_code}</JobCategoryCode>'
            if w.occupation.isco08_code
            else ""
        )
        jobs += (
            "<EmployerHistory><PositionHistory>"
            f"<PositionTitle{uri}>{_escape(w.occupation.title)}</PositionTitle>{isco}"
            f"<EmploymentPeriod>{period}</EmploymentPeriod><Country>{w.country_code}</Country>"
            "</PositionHistory></EmployerHistory>"
        )
    schools = "".join(
        "<EducationOrganizationAttendance>"
        + (f'<EducationLevelCode listName="EQF">{q.eqf_level}</EducationLevelCode>' if q.eqf_level else "")
        + f"<EducationDegree><DegreeName>{_escape(q.title)}</DegreeName></EducationDegree>"
        + (
            f"<ReferenceLocation><CountryCode>{q.awarding_country_code}</CountryCode></ReferenceLocation>"
            if q.awarding_country_code
            else ""
        )
        + "</EducationOrganizationAttendance>"
        for q in p.qualifications
    )
    competencies = "".join(
        f"<PersonCompetency><CompetencyID>{lang.language_code}</CompetencyID><TaxonomyID>language</TaxonomyID>"
        f"<CompetencyDimension><CompetencyDimensionTypeCode>CEF-Overall</CompetencyDimensionTypeCode>"
        f"<Score><ScoreText>{CEFR_NAMES[lang.level]}</ScoreText></Score></CompetencyDimension></PersonCompetency>"
        for lang in p.languages
    ) + "".join(
        f"<PersonCompetency><CompetencyID>{_escape(s.esco_uri)}</CompetencyID>"
        f"<CompetencyName>{_escape(s.label)}</CompetencyName><TaxonomyID>other</TaxonomyID></PersonCompetency>"
        for s in p.skills
    )
    licences = "".join(
        f"<License><LicenseTypeCode>{c}</LicenseTypeCode></License>" for c in p.driving_licence_categories
    )
    return (
        f'<Candidate xmlns="{namespace}" xmlns:oa="http://www.openapplications.org/oagis/9">'
        "<DocumentID>round-trip</DocumentID>"
        "<CandidatePerson><PersonName><FamilyName>-</FamilyName></PersonName>"
        f"<Communication><Address><CountryCode>{p.residence_country_code}</CountryCode></Address></Communication>"
        "</CandidatePerson>"
        f"<CandidateProfile><ExecutiveSummary>{_escape(p.summary)}</ExecutiveSummary>"
        f"<EmploymentHistory>{jobs}</EmploymentHistory><EducationHistory>{schools}</EducationHistory>"
        f"<Licenses>{licences}</Licenses><PersonQualifications>{competencies}</PersonQualifications>"
        f"<CandidatePositionPreferences>{wanted}</CandidatePositionPreferences>"
        "</CandidateProfile></Candidate>"
    )


def _document(identification: str, professional: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><SkillsPassport xmlns="{V3}">'
        f"<LearnerInfo>{identification}{professional}</LearnerInfo></SkillsPassport>"
    )
