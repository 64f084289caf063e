"""Matching a candidate and an offer: hard constraints filter, a score ranks, and the reasons explain.

Hard constraints (a candidate who fails one does not appear): the occupation
is within the offer's ISCO-08 sub-major group; every language the offer
requires is held at or above its CEFR level (a mother tongue above C2); the
offer's work country is among the candidate's destinations and its mobility
type among the candidate's, when the candidate named any; the candidate is
available by the start date, when both are known. Consent and the offer being
open are checked by the store query.

The score (0–1000) ranks the rest: occupation up to 500 (unit group 500,
minor group 350, sub-major group 200; a profile known only at a coarser ISCO-08
group, from a title the resolver could not settle further, fits at the level its
code shares with the offer's and is explained so), skills up to 300 (the share of the
offer's required skills the candidate holds; full when none is required),
experience up to 200 (months held over months required, capped; full when
none is required). Each part is a whole number computed in integers only,
rounded down (``skill_points``, ``experience_points``): SQL's integer division
gives exactly the same, so the store computes the same score in SQL to rank a
whole pool and read back only one page. Equal scores are ordered by record,
so pages are stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from spehub.v1 import common_pb2, offer_pb2

from hub.domain.records import mobility_bit, skill_key

UNIT, MINOR, SUB_MAJOR = 1, 2, 3  # spehub.v1.OccupationFit
OCCUPATION_POINTS = {UNIT: 500, MINOR: 350, SUB_MAJOR: 200}
SKILL_POINTS = 300
EXPERIENCE_POINTS = 200
FIT_WORDS = {
    UNIT: "same ISCO-08 unit group",
    MINOR: "same ISCO-08 minor group",
    SUB_MAJOR: "same ISCO-08 sub-major group",
}
LEVELS: dict[int, str] = {v: k.removeprefix("CEFR_LEVEL_") for k, v in common_pb2.CefrLevel.items()}
MOBILITY_WORDS: dict[int, str] = {
    v: k.removeprefix("MOBILITY_TYPE_").lower() for k, v in common_pb2.MobilityType.items()
}


@dataclass(frozen=True)
class Candidate:
    """What matching knows of a profile (from the store's index)."""

    pk: int
    isco08_codes: tuple[str, ...]
    languages: dict[str, int]
    destinations: tuple[str, ...]
    mobility_mask: int
    available_from: date | None
    skills: frozenset[str]
    experience_months: int


@dataclass(frozen=True)
class Offer:
    """What matching knows of an offer."""

    pk: int
    isco08_code: str
    work_country: str
    mobility_type: int
    start_date: date | None
    languages: tuple[tuple[str, int], ...]
    # skill key -> how to show it (label, else ESCO URI)
    skills: dict[str, str] = field(default_factory=dict)
    required_experience_months: int = 0


@dataclass(frozen=True)
class Match:
    score: int
    occupation_fit: int
    skills_in_common: tuple[str, ...]
    skills_missing: tuple[str, ...]
    languages: tuple[tuple[str, int, int], ...]  # (code, required, held)
    destination_wanted: bool
    mobility_type_wanted: bool
    available_in_time: bool
    experience_months: int
    required_experience_months: int
    explanations: tuple[str, ...]


def offer_facts(pk: int, o: offer_pb2.JobOffer) -> Offer:
    """What matching uses of an offer record."""
    start = o.contract.start_date
    return Offer(
        pk=pk,
        isco08_code=o.occupation.isco08_code,
        work_country=o.place.country_code,
        mobility_type=o.contract.mobility_type,
        start_date=date(start.year, start.month, start.day) if start.year else None,
        languages=tuple((lang.language_code, lang.level) for lang in o.required_languages),
        skills={skill_key(s): s.label or s.esco_uri for s in o.required_skills},
        required_experience_months=o.required_experience_months,
    )


def _fit(code: str, offer_code: str) -> int:
    """The ISCO-08 level two codes share: as many leading digits as both have and agree on
    (4: UNIT, 3: MINOR, 2: SUB_MAJOR), 0 below the sub-major group. A code known only at a
    coarser group shares no more than its own digits."""
    shared = 0
    for a, b in zip(code, offer_code, strict=False):
        if a != b:
            break
        shared += 1
    return {4: UNIT, 3: MINOR, 2: SUB_MAJOR}.get(shared, 0)


def _closest_code(candidate_codes: tuple[str, ...], offer_code: str) -> str:
    """The candidate's code that fits the offer best."""
    return min(candidate_codes, key=lambda code: (_fit(code, offer_code) or 99, -len(code)))


def occupation_fit(candidate_codes: tuple[str, ...], offer_code: str) -> int:
    """The closest ISCO-08 level the codes share with the offer's (UNIT, MINOR, SUB_MAJOR), or 0."""
    fits = [f for f in (_fit(code, offer_code) for code in candidate_codes) if f]
    return min(fits, default=0)


def skill_points(held: int, required: int) -> int:
    """⌊300 × held ÷ required⌋, in integers; 300 when the offer requires no skill."""
    return SKILL_POINTS * held // required if required else SKILL_POINTS


def experience_points(months: int, required: int) -> int:
    """⌊200 × months ÷ required⌋ capped at 200, in integers; 200 when none is required."""
    if not required or months >= required:
        return EXPERIENCE_POINTS
    return EXPERIENCE_POINTS * max(months, 0) // required


def match(c: Candidate, o: Offer) -> Match | None:
    """The match of a candidate and an offer, or None if a hard constraint fails."""
    fit = occupation_fit(c.isco08_codes, o.isco08_code)
    if not fit:
        return None
    languages = tuple((code, level, c.languages.get(code, 0)) for code, level in o.languages)
    if any(held < required for _, required, held in languages):
        return None
    destination = not c.destinations or o.work_country in c.destinations
    mobility = not c.mobility_mask or bool(c.mobility_mask & mobility_bit(o.mobility_type))
    in_time = c.available_from is None or o.start_date is None or c.available_from <= o.start_date
    if not (destination and mobility and in_time):
        return None
    common = tuple(label for key, label in o.skills.items() if key in c.skills)
    missing = tuple(label for key, label in o.skills.items() if key not in c.skills)
    required = o.required_experience_months
    score = (
        OCCUPATION_POINTS[fit]
        + skill_points(len(common), len(o.skills))
        + experience_points(c.experience_months, required)
    )
    return Match(
        score=score,
        occupation_fit=fit,
        skills_in_common=common,
        skills_missing=missing,
        languages=languages,
        destination_wanted=destination,
        mobility_type_wanted=mobility,
        available_in_time=in_time,
        experience_months=c.experience_months,
        required_experience_months=required,
        explanations=_explain(c, o, fit, common, missing, languages),
    )


def _explain(
    c: Candidate,
    o: Offer,
    fit: int,
    common: tuple[str, ...],
    missing: tuple[str, ...],
    languages: tuple[tuple[str, int, int], ...],
) -> tuple[str, ...]:
    known = _closest_code(c.isco08_codes, o.isco08_code)
    if len(known) < 4:
        # A coarser code is scored for what it says, no more (docs/occupations.md).
        lines = [
            f"Occupation: known only at ISCO-08 group {known}, the offer's {FIT_WORDS[fit].removeprefix('same ')} ({o.isco08_code})."
        ]
    else:
        lines = [f"Occupation: {FIT_WORDS[fit]} as the offer ({o.isco08_code})."]
    if o.skills:
        line = f"Skills: {len(common)} of the {len(o.skills)} required"
        line += f"; has {', '.join(common)}" if common else ""
        line += f"; missing {', '.join(missing)}" if missing else ""
        lines.append(line + ".")
    else:
        lines.append("Skills: the offer requires none in particular.")
    for code, required, held in languages:
        lines.append(f"Language {code}: {LEVELS[held]} held, {LEVELS[required]} required.")
    lines.append(
        f"Destination: wants to work in {o.work_country}."
        if c.destinations
        else f"Destination: named none, so {o.work_country} is open."
    )
    mobility = MOBILITY_WORDS.get(o.mobility_type, "")
    lines.append(
        f"Mobility: {mobility} work wanted."
        if c.mobility_mask
        else f"Mobility: named none, so {mobility} work is open."
    )
    if c.available_from and o.start_date:
        lines.append(
            f"Availability: from {c.available_from.isoformat()}, before the start on {o.start_date.isoformat()}."
        )
    else:
        lines.append("Availability: no date to compare.")
    if o.required_experience_months:
        lines.append(f"Experience: {c.experience_months} months, {o.required_experience_months} required.")
    else:
        lines.append(f"Experience: {c.experience_months} months; none required.")
    return tuple(lines)
