"""France Travail job-seeker profiles, in the JSON format this project documents
(docs/formats/france-travail-profile.md) because France Travail publishes no
public one: its field names and code systems are France Travail's own (ROME
codes and job titles, "niveauLibelle" qualification levels, CDI/CDD/MIS/SAI).

Each profile gives the candidate's two records, keyed by HMAC of the dossier
identifier under the SPE's subject key. The ROME code resolves to ISCO-08 as
for offers (job title first, then an unambiguous ROME fiche), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from spehub.v1 import common_pb2, profile_pb2

from adapters.base import Converted, Problem, Problems
from adapters.codelists import CodeLists
from adapters.france_travail import eqf_of_level, level_label
from adapters.json_offers import JsonAdapter
from adapters.languages import LanguageReader, add_language
from adapters.people import (
    CEFR,
    CEFR_NAMES,
    Pseudonyms,
    birth,
    candidate_pair,
    country,
    date_text,
    e164,
    full_date,
    nationality,
    period_date,
)

FORMAT = "spehub-ft-profile/1"
LEVELS = LanguageReader()
MOBILITY_BY_CONTRACT = {
    "CDI": common_pb2.MOBILITY_TYPE_PERMANENT,
    "CDD": common_pb2.MOBILITY_TYPE_TEMPORARY,
    "SAI": common_pb2.MOBILITY_TYPE_SEASONAL,
    "CIR": common_pb2.MOBILITY_TYPE_CIRCULAR,
}
CONTRACT_BY_MOBILITY = {v: k for k, v in MOBILITY_BY_CONTRACT.items()}
LICENCE = re.compile(r"[A-Z][A-Z0-9]{0,3}")


class FranceTravailProfiles(JsonAdapter):
    """The France Travail profile adapter (our documented JSON format)."""

    record_arrays = (("profils", "$.profils[{i}]"),)

    name = "france-travail-profiles"

    def __init__(
        self,
        codelists: CodeLists,
        origin_participant_id: str,
        subject_key: bytes = b"",
        workers: int | None = None,
        **_: Any,
    ) -> None:
        super().__init__(codelists, origin_participant_id, workers=workers)
        self.pseudonyms = Pseudonyms(subject_key)

    def offers_in(self, data: Any) -> tuple[list[Any], str]:
        if isinstance(data, dict) and isinstance(data.get("profils"), list):
            return data["profils"], "$.profils[{i}]"
        return super().offers_in(data)

    def convert_item(self, item: Any, where: str) -> Iterator[Converted]:
        problems = Problems(where)
        if not isinstance(item, dict):
            yield Converted(where, None, (Problem(where, "$", "a profile must be a JSON object"),))
            return
        if item.get("format", FORMAT) != FORMAT:
            problems.error("format", f"this adapter reads {FORMAT}")
        dossier = str(item.get("identifiant") or "").strip()
        if not dossier:
            problems.error("identifiant", "missing: the job-seeker cannot be keyed")
        profile, personal = candidate_pair(self.origin, self.pseudonyms(dossier))
        updated = str(item.get("dateActualisation") or "")
        try:
            stamp = datetime.fromisoformat(updated.replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                raise ValueError
            profile.header.version = personal.header.version = int(stamp.timestamp())
        except ValueError:
            problems.error("dateActualisation", "missing or not an ISO 8601 date-time with its offset")
        residence = country(str(item.get("paysResidence") or "FR"))
        self.fill_profile(profile, item, residence, problems)
        self.fill_person(personal, item, residence, problems)
        yield from problems.results(profile, personal)

    def fill_profile(
        self, profile: profile_pb2.CandidateProfile, o: dict[str, Any], residence: str, problems: Problems
    ) -> None:
        error, warn = problems.error, problems.warn
        profile.residence_country_code = residence
        wanted = o.get("metiersRecherches") or []
        if not wanted:
            error("metiersRecherches", "at least one occupation sought is needed")
        for j, job in enumerate(wanted):
            self._occupation(profile.occupations.add(), job, problems, f"metiersRecherches[{j}]")
        for j, skill in enumerate(o.get("competences") or []):
            uri, label = str(skill.get("codeEsco") or ""), str(skill.get("libelle") or "")
            if uri and not uri.startswith("http://data.europa.eu/esco/skill/"):
                warn(f"competences[{j}].codeEsco", "not an ESCO skill URI: dropped")
            elif uri or label:
                profile.skills.add(esco_uri=uri, label=label)
        for j, lang in enumerate(o.get("langues") or []):
            code, level_text = str(lang.get("code") or ""), str(lang.get("niveauCECRL") or "")
            word = LEVELS.level(level_text)  # A1…C2, or a level word ("courant", "langue maternelle")
            add_language(profile.languages, code, [CEFR[word] if word else None], problems, f"langues[{j}]")
        for j, training in enumerate(o.get("formations") or []):
            title = str(training.get("intitule") or "")
            if not title:
                warn(f"formations[{j}].intitule", "missing: the training is not carried")
                continue
            q = profile.qualifications.add(
                title=title, awarding_country_code=country(str(training.get("pays") or ""))
            )
            q.eqf_level = eqf_of_level(str(training.get("niveauLibelle") or ""))  # type: ignore[assignment]
            if training.get("niveauLibelle") and not q.eqf_level:
                problems.warn(f"formations[{j}].niveauLibelle", "no EQF level known for it")
        for j, job in enumerate(o.get("experiences") or []):
            w = profile.work_experiences.add(
                country_code=country(str(job.get("pays") or "")),
                description=str(job.get("description") or ""),
            )
            if job.get("codeRome"):
                self._occupation(w.occupation, job, problems, f"experiences[{j}]")
            for key, target, end in (("debut", w.period.start, False), ("fin", w.period.end, True)):
                if job.get(key):
                    value = period_date(str(job[key]), end=end)
                    if value is None:
                        warn(f"experiences[{j}].{key}", "not a date written YYYY-MM or YYYY-MM-DD: dropped")
                    else:
                        target.CopyFrom(value)
        for j, licence in enumerate(o.get("permis") or []):
            if LICENCE.fullmatch(str(licence)):
                profile.driving_licence_categories.append(str(licence))
            else:
                warn(f"permis[{j}]", "not a driving licence category such as 'B' or 'C1E': dropped")
        mobility = o.get("mobilite") or {}
        profile.desired_country_codes.extend(country(str(c)) for c in mobility.get("pays") or [])
        for j, contract in enumerate(mobility.get("typesContrat") or []):
            wanted = MOBILITY_BY_CONTRACT.get(str(contract))
            if wanted is None:
                warn(f"mobilite.typesContrat[{j}]", f"not one of {sorted(MOBILITY_BY_CONTRACT)}: dropped")
            elif wanted not in profile.mobility_types:
                profile.mobility_types.append(wanted)
        if o.get("disponibleLe"):
            available = full_date(str(o["disponibleLe"]))
            if available is None:
                warn("disponibleLe", "not a date written YYYY-MM-DD: dropped")
            else:
                profile.available_from.CopyFrom(available)
        profile.summary = str(o.get("resume") or "")

    def _occupation(
        self, occ: common_pb2.Occupation, job: dict[str, Any], problems: Problems, where: str
    ) -> None:
        rome, label = str(job.get("codeRome") or ""), str(job.get("appellationLibelle") or "")
        occ.national_code.CopyFrom(common_pb2.NationalCode(system="ROME", code=rome, label=label))
        occ.title = label
        problems.occupation(occ, self.codelists.resolve_rome(rome, label), f"{where}.codeRome")

    def fill_person(
        self, personal: profile_pb2.PersonalDetails, o: dict[str, Any], residence: str, problems: Problems
    ) -> None:
        personal.family_name, personal.given_names = str(o.get("nom") or ""), str(o.get("prenom") or "")
        if not personal.family_name:
            problems.error("nom", "missing")
        if o.get("dateNaissance"):
            birth(personal, str(o["dateNaissance"]), problems, "dateNaissance")
        for j, code in enumerate(o.get("nationalites") or []):
            nationality(personal, str(code), problems, f"nationalites[{j}]")
        if o.get("telephone"):
            number = e164(str(o["telephone"]), residence)
            if number is None:
                problems.warn("telephone", f"not a valid phone number for {residence}: dropped")
            else:
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_PHONE, value=number)
        if o.get("courriel"):
            personal.contacts.add(type=profile_pb2.CONTACT_TYPE_EMAIL, value=str(o["courriel"]))

    def write(self, record: Any) -> dict[str, Any]:
        """The format's fields a common record fills (profile or personal details)."""
        if isinstance(record, profile_pb2.PersonalDetails):
            out: dict[str, Any] = {"nom": record.family_name, "prenom": record.given_names}
            if record.HasField("birth_date"):
                out["dateNaissance"] = date_text(record.birth_date)
            out["nationalites"] = list(record.nationality_country_codes)
            for c in record.contacts:
                out["telephone" if c.type == profile_pb2.CONTACT_TYPE_PHONE else "courriel"] = c.value
            return out
        p = record
        out = {
            "format": FORMAT,
            "paysResidence": p.residence_country_code,
            "metiersRecherches": [_job(o) for o in p.occupations],
            "competences": [{"codeEsco": s.esco_uri, "libelle": s.label} for s in p.skills],
            "langues": [
                {
                    "code": lang.language_code,
                    "niveauCECRL": "langue maternelle" if lang.level == 7 else CEFR_NAMES[lang.level],
                }
                for lang in p.languages
            ],
            "formations": [
                {
                    "intitule": q.title,
                    "niveauLibelle": level_label(q.eqf_level),
                    "pays": q.awarding_country_code,
                }
                for q in p.qualifications
            ],
            "experiences": [
                {
                    **(_job(w.occupation) if w.HasField("occupation") else {}),
                    "pays": w.country_code,
                    "description": w.description,
                    **({"debut": date_text(w.period.start)} if w.period.HasField("start") else {}),
                    **({"fin": date_text(w.period.end)} if w.period.HasField("end") else {}),
                }
                for w in p.work_experiences
            ],
            "permis": list(p.driving_licence_categories),
            "mobilite": {
                "pays": list(p.desired_country_codes),
                "typesContrat": [CONTRACT_BY_MOBILITY[m] for m in p.mobility_types],
            },
            "resume": p.summary,
        }
        if p.HasField("available_from"):
            out["disponibleLe"] = date_text(p.available_from)
        return out

    def round_trip(self, record: Any, where: str) -> Any:
        problems = Problems(where)
        if isinstance(record, profile_pb2.CandidateProfile):
            again: Any = profile_pb2.CandidateProfile(
                header=record.header, consent_record_id=record.consent_record_id
            )
            self.fill_profile(again, self.write(record), record.residence_country_code, problems)
        else:
            again = profile_pb2.PersonalDetails(
                header=record.header,
                profile_record_id=record.profile_record_id,
                consent_record_id=record.consent_record_id,
            )
            self.fill_person(again, self.write(record), "", problems)
        return None if problems.failed else again


def _job(occ: common_pb2.Occupation) -> dict[str, str]:
    return {"codeRome": occ.national_code.code, "appellationLibelle": occ.title}
