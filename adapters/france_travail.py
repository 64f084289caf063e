"""France Travail "offres d'emploi v2" offer JSON ↔ spehub.v1.JobOffer.

Reads one offer, a list of offers, or a search response (``resultats``).
What the format does not carry is never invented:
- ``romeCode`` is resolved to ISCO-08 through the code lists (job title first,
  then the ROME fiche only if unambiguous); otherwise the offer is reported
  and skipped, with the candidate unit groups;
- languages carry no CEFR level, so they are not turned into requirements
  (a warning says so); the salary is free text, likewise;
- contract types other than CDI, CDD, MIS and SAI are reported;
- an offer without ``nombrePostes`` is one position, with a warning; a contract's
  duration in months ("CDD - 6 Mois"), a desired (not required) experience and the
  qualification level ("Employé qualifié") are carried.
Field names follow the API (``appellationlibelle`` is spelled so).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import common_pb2, offer_pb2

from adapters.base import Converted, Problem, Problems
from adapters.codelists import Resolution
from adapters.json_offers import JsonAdapter, timestamp

CONTRACTS = {
    "CDI": (offer_pb2.CONTRACT_TYPE_PERMANENT, common_pb2.MOBILITY_TYPE_PERMANENT),
    "CDD": (offer_pb2.CONTRACT_TYPE_FIXED_TERM, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "MIS": (offer_pb2.CONTRACT_TYPE_TEMPORARY_AGENCY, common_pb2.MOBILITY_TYPE_TEMPORARY),
    "SAI": (offer_pb2.CONTRACT_TYPE_SEASONAL, common_pb2.MOBILITY_TYPE_SEASONAL),
}
CONTRACT_CODES: dict[int, str] = {v[0]: k for k, v in CONTRACTS.items()}
# French qualification levels (Cadre national des certifications) to EQF, as France referenced them.
EQF_BY_LEVEL = [
    ("cap, bep", common_pb2.EQF_LEVEL_3),
    ("bac+5", common_pb2.EQF_LEVEL_7),
    ("bac+3", common_pb2.EQF_LEVEL_6),
    ("bac+2", common_pb2.EQF_LEVEL_5),
    ("bac ou", common_pb2.EQF_LEVEL_4),
]
OFFER_ID = re.compile(r"[A-Za-z0-9]{1,40}")
# ASCII digits only, here and in every adapter: France Travail writes no other, and the schema carries
# none (docs/adapters.md, "Digits").
HOURS = re.compile(r"^\s*([0-9]{1,2})\s*H\s*([0-9]{2})?", re.IGNORECASE)
EXPERIENCE = re.compile(r"([0-9]+)\s*(an|mois)", re.IGNORECASE)
# "CDD - 6 Mois", "Contrat à durée déterminée - 2 Mois", "Mission intérimaire - 15 Jour(s)"
DURATION = re.compile(r"-\s*([0-9]+)\s*(mois|ans?|an\(s\)|jours?|jour\(s\)|semaines?)", re.IGNORECASE)


class FranceTravailOffers(JsonAdapter):
    """The France Travail offer adapter."""

    record_arrays = (("resultats", "$.resultats[{i}]"),)

    name = "france-travail-offers"
    # Always one process: handing an offer (a nested dict) to a worker and its record back cost
    # more than converting it; two processes gave 0.6-0.8x one (bench/adapter_france_travail.py).
    parallel_from_items = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolved: dict[tuple[str, str], Resolution] = {}

    def offers_in(self, data: Any) -> tuple[list[Any], str]:
        if isinstance(data, dict) and "resultats" in data:
            return data["resultats"], "$.resultats[{i}]"
        return super().offers_in(data)

    def convert(self, o: Any, where: str) -> Converted:
        """One offer object to a JobOffer, or the problems that stop it.

        The message is built by one constructor, with its nested messages given as dicts: half the
        cost of building them as messages, a third of setting fields one by one (the adapter
        converts whole exports)."""
        problems = Problems(where)
        error, warn = problems.error, problems.warn

        if not isinstance(o, dict):
            return Converted(where, None, (Problem(where, "$", "an offer must be a JSON object"),))
        get = o.get
        offer_id = str(get("id") or "")
        if not OFFER_ID.fullmatch(offer_id):
            error("id", "missing or not a France Travail offer id")
        header: dict[str, Any] = {"record_id": f"FT-{offer_id}", "origin_participant_id": self.origin}
        updated = get("dateActualisation") or get("dateCreation")
        try:
            stamp = _instant(str(updated))
            header["version"] = stamp.seconds
            header["updated_at"] = stamp
        except ValueError:
            error("dateActualisation", "missing or not an ISO 8601 date-time")
        title = str(get("intitule") or "")
        if not title:
            error("intitule", "missing")
        rome, label = str(get("romeCode") or ""), str(get("appellationlibelle") or "")
        resolution = self._isco(rome, label)
        isco08 = resolution.isco08
        if isco08 is None:
            if resolution.decision == "abstained" and resolution.suggestions:
                problems.hold("romeCode", resolution.how)
            else:
                error("romeCode", resolution.how)
        employer = get("entreprise") or {}
        employer_name = str(employer.get("nom") or "")
        if not employer_name:
            error("entreprise.nom", "the hub needs the employer's name")
        positions = get("nombrePostes")
        if positions is None:  # real offers often leave it out: one position, said so
            warn("nombrePostes", "missing: taken as 1 position")
            positions = 1
        elif not (isinstance(positions, int) and not isinstance(positions, bool) and positions >= 1):
            error("nombrePostes", "not a positive whole number")
            positions = 0
        place = get("lieuTravail") or {}
        contract_code = str(get("typeContrat") or "")
        contract = CONTRACTS.get(contract_code)
        if contract is None:
            error(
                "typeContrat",
                f"{contract_code or 'missing'}: only CDI, CDD, MIS and SAI map to the common schema",
            )
        hours = HOURS.match(str(get("dureeTravailLibelle") or ""))
        skills = []
        for j, skill in enumerate(get("competences") or ()):
            if skill.get("libelle"):
                skills.append({"label": str(skill["libelle"])})
            else:
                warn(f"competences[{j}]", "no label: not carried over")
        qualifications = []
        for j, training in enumerate(get("formations") or ()):
            level = eqf_of_level(str(training.get("niveauLibelle") or ""))
            qualifications.append(
                {
                    "title": str(training.get("domaineLibelle") or training.get("niveauLibelle") or ""),
                    "eqf_level": level,
                }
            )
            if not level:
                warn(f"formations[{j}].niveauLibelle", "no EQF level known for it")
        for j, _ in enumerate(get("langues") or ()):
            warn(f"langues[{j}]", "France Travail gives no CEFR level: not carried as a requirement")
        if (get("salaire") or {}).get("libelle"):
            warn("salaire.libelle", "free-text salary: not carried into the structured pay")
        naf = str(get("codeNAF") or "")
        duration = 0
        if contract_code in ("CDD", "MIS", "SAI"):
            found = DURATION.search(str(get("typeContratLibelle") or ""))
            if found and found.group(2).lower().startswith("an"):
                duration = int(found.group(1)) * 12
            elif found and found.group(2).lower() == "mois":
                duration = int(found.group(1))
            elif found:
                warn(
                    "typeContratLibelle",
                    "a duration in days or weeks: not carried (the schema counts months)",
                )
        desired = 0
        if get("experienceExige") == "S":
            desired = _months(str(get("experienceLibelle") or ""))
            if not desired:
                warn("experienceLibelle", "desired experience with no duration in it: not carried")
        position_level: dict[str, str] | None = None
        if get("qualificationCode"):
            position_level = {
                "system": "FT-QUALIFICATION",
                "code": str(get("qualificationCode")),
                "label": str(get("qualificationLibelle") or ""),
            }
        # Built from plain values in one constructor call (see the docstring); typed as a mapping
        # because protobuf's stubs do not describe the dict form of nested messages.
        fields: dict[str, Any] = dict(
            header=header,
            title=title,
            description=str(get("description") or ""),
            occupation={
                "isco08_code": isco08 or "",
                "national_code": {"system": "ROME", "code": rome, "label": str(get("romeLibelle") or "")},
                "title": label,
                "resolution": _resolution(resolution),
            },
            # NAF rév. 2 = NACE rév. 2 plus a French letter.
            employer={"name": employer_name, "country_code": "FR", "nace_code": naf[:5]},
            positions=positions,
            place={
                "country_code": "FR",
                "locality": str(place.get("libelle") or ""),
                "postal_code": str(place.get("codePostal") or ""),
            },
            contract=(
                {"type": contract[0], "mobility_type": contract[1], "duration_months": duration}
                if contract
                else None
            ),
            desired_experience_months=desired,
            position_level=position_level,
            weekly_hours=int(hours.group(1)) + int(hours.group(2) or 0) / 60 if hours else 0,
            required_experience_months=_experience_months(o),
            required_skills=skills,
            required_qualifications=qualifications,
            target_country_codes=self.targets,
        )
        return problems.result(offer_pb2.JobOffer(**fields))

    def _isco(self, rome: str, label: str) -> Resolution:
        """ISCO-08 for a ROME code and job title (the code lists' resolution, remembered: an export
        repeats a few hundred job titles)."""
        key = (rome, label)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = self.codelists.resolve_rome(rome, label)
        return found

    def write(self, offer: offer_pb2.JobOffer) -> dict[str, Any]:
        """The France Travail shape of a JobOffer (what the common schema carries of it)."""
        out: dict[str, Any] = {
            "id": offer.header.record_id.removeprefix("FT-"),
            "intitule": offer.title,
            "description": offer.description,
            # At the precision read (France Travail writes milliseconds): a round trip keeps it.
            "dateActualisation": offer.header.updated_at.ToDatetime(tzinfo=UTC).isoformat()
            if offer.header.HasField("updated_at")
            else datetime.fromtimestamp(offer.header.version, UTC).isoformat(),
            "romeCode": offer.occupation.national_code.code,
            "romeLibelle": offer.occupation.national_code.label,
            "appellationlibelle": offer.occupation.title,
            "entreprise": {"nom": offer.employer.name},
            "nombrePostes": offer.positions,
            "lieuTravail": {"libelle": offer.place.locality, "codePostal": offer.place.postal_code},
            "typeContrat": CONTRACT_CODES.get(offer.contract.type, ""),
            "competences": [{"libelle": s.label} for s in offer.required_skills],
        }
        if offer.employer.nace_code:
            out["codeNAF"] = offer.employer.nace_code
        if offer.weekly_hours:
            h = int(offer.weekly_hours)
            m = round((offer.weekly_hours - h) * 60)
            out["dureeTravailLibelle"] = f"{h}H{m:02d}" if m else f"{h}H"
        if offer.required_experience_months:
            out["experienceExige"] = "E"
            out["experienceLibelle"] = f"{offer.required_experience_months} Mois"
        elif offer.desired_experience_months:
            out["experienceExige"] = "S"
            out["experienceLibelle"] = f"{offer.desired_experience_months} Mois"
        if offer.contract.duration_months:
            out["typeContratLibelle"] = f"{out['typeContrat']} - {offer.contract.duration_months} Mois"
        if offer.HasField("position_level"):
            out["qualificationCode"] = offer.position_level.code
            out["qualificationLibelle"] = offer.position_level.label
        if offer.required_qualifications:
            out["formations"] = [
                {"domaineLibelle": q.title, "niveauLibelle": level_label(q.eqf_level)}
                for q in offer.required_qualifications
            ]
        return out


@functools.lru_cache(maxsize=1024)
def eqf_of_level(label: str) -> int:
    folded = label.casefold()
    for prefix, level in EQF_BY_LEVEL:
        if prefix in folded:
            return level
    return common_pb2.EQF_LEVEL_UNSPECIFIED


def level_label(eqf: int) -> str:
    labels: dict[int, str] = {
        common_pb2.EQF_LEVEL_3: "CAP, BEP et équivalents",
        common_pb2.EQF_LEVEL_4: "Bac ou équivalent",
        common_pb2.EQF_LEVEL_5: "Bac+2 ou équivalents",
        common_pb2.EQF_LEVEL_6: "Bac+3, Bac+4 ou équivalents",
        common_pb2.EQF_LEVEL_7: "Bac+5 et plus ou équivalents",
    }
    return labels.get(eqf, "")


def _instant(text: str) -> Timestamp:
    """An ISO 8601 date-time ("Z" included; without an offset, UTC) as a Timestamp. Raises ValueError."""
    return timestamp(datetime.fromisoformat(text))


def _experience_months(o: dict[str, Any]) -> int:
    if o.get("experienceExige") != "E":
        return 0
    return _months(str(o.get("experienceLibelle") or ""))


def _months(text: str) -> int:
    """The months of "6 Mois", "2 An(s)", "1 an - en environnements Devops"; 0 when none is said."""
    found = EXPERIENCE.search(text)
    if not found:
        return 0
    n = int(found.group(1))
    return n * 12 if found.group(2).lower() == "an" else n


def _resolution(resolution: Resolution) -> dict[str, Any] | None:
    """How the occupation was found, as the Occupation message's dict (None when it was not)."""
    if resolution.isco08 is None:
        return None
    ancestor = len(resolution.isco08) < 4
    return {
        "method": resolution.method,
        "decision": "RESOLUTION_DECISION_ANCESTOR" if ancestor else "RESOLUTION_DECISION_UNIT_GROUP",
        "score": round(resolution.score, 4),
    }
