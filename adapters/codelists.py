"""Occupation code lists and crosswalks, imported from the files their publishers distribute.

``import_sources(folder)`` reads the ISCO-08 tables (from ESCO), the official
ESCO–ROME mapping joined with ROME, the ROME fiche table derived from it, and
the official ESCO–SE (JobTech) mapping, and builds one versioned JSON (the
version is the SHA-256 of the inputs). ``integrity()`` says what is missing:
unit groups without parents, crosswalk targets that are not unit groups, and
codes that map to nothing.
"""

from __future__ import annotations

import copy
import csv
import functools
import gzip
import hashlib
import io
import json
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SOURCES = {
    "isco_units": "isco08_unit_groups_436_en_fr.csv",
    "isco_groups": "isco08_groups_en_fr_from_esco.csv",
    "esco": "esco_occupations_to_isco08_en_fr.csv",
    "rome_appellations": "rome_appellation_to_esco_to_isco08.csv",
    "rome_fiches": "rome_fiche_to_isco08_derived.csv",
    "jobtech": "jobtech_occupation_name_to_esco_to_isco08.csv",
    # The official ESCO v1.0 occupations downloads: every preferred and alternative label.
    "esco_fr": "esco_v1.0_occupations_fr.csv",
    "esco_en": "esco_v1.0_occupations_en.csv",
}
# What each source is, who publishes it and on what terms (written beside the shipped lists).
PROVENANCE = {
    "isco_units": "ISCO-08 unit groups with English and French (CITP-08) titles and parents, from ESCO v1.0 "
    "(© European Union; reuse under Commission Decision 2011/833/EU, with attribution)",
    "isco_groups": "ISCO-08 groups of every level with ESCO URIs, from ESCO v1.0 (© European Union; Decision 2011/833/EU)",
    "esco": "ESCO v1.0 occupations to ISCO-08 unit groups, English and French labels (© European Union; Decision 2011/833/EU)",
    "rome_appellations": "Pôle emploi / France Travail official ESCO–ROME mapping v1.4 (2022) joined with the ROME "
    "open data (Licence Ouverte / Etalab) and ESCO",
    "rome_fiches": "ROME fiche to ISCO-08 unit groups with weights, derived from the ESCO–ROME mapping (not an official table)",
    "jobtech": "Arbetsförmedlingen JobTech Taxonomy occupation names to ESCO, official ESCO–SE mapping v1.1.1 "
    "(JobTech Taxonomy, CC0) joined with ESCO",
    "esco_fr": "ESCO v1.0 occupations, French: preferred and alternative labels (© European Union; Decision 2011/833/EU)",
    "esco_en": "ESCO v1.0 occupations, English: preferred and alternative labels (© European Union; Decision 2011/833/EU)",
}
TRUSTED_RELATIONS = ("exactMatch", "closeMatch")


@functools.lru_cache(maxsize=65536)
def normalise(label: str) -> str:
    """Case, accents and spacing folded, for matching titles as written by people.

    Cached: exports repeat the same few words (levels, mobility, countries) on every row."""
    if label.isascii():
        return " ".join(label.casefold().split())
    # Drop combining marks (French accents, Arabic short vowels), keep every script's letters.
    decomposed = unicodedata.normalize("NFKD", label)
    text = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    text = text.replace("’", "'").replace("œ", "oe").replace("æ", "ae")
    return " ".join(text.split())


@dataclass(frozen=True)
class Resolution:
    """An ISCO-08 code for a national code or a title, at the level the evidence supports, or why
    there is none (then ``suggestions`` for the person who decides)."""

    isco08: str | None
    how: str
    decision: str = "unit_group"  # unit_group | ancestor | abstained
    score: float = 0.0
    method: str = ""  # isco_code | esco_uri | national_code | national_code_and_title | title | alias
    esco_uri: str = ""
    suggestions: tuple[tuple[str, str, str, float], ...] = ()  # (isco08, ESCO URI, label, score)

    def apply(self, occupation: Any) -> None:
        """Write the code and how it was found into an Occupation. (The ESCO occupation the
        resolver ranked first is not written: the record keeps what the national service said, so
        that reading it back gives the same record.)"""
        from spehub.v1 import common_pb2

        assert self.isco08 is not None
        occupation.isco08_code = self.isco08
        occupation.resolution.CopyFrom(
            common_pb2.OccupationResolution(
                method=self.method,
                decision=common_pb2.RESOLUTION_DECISION_UNIT_GROUP
                if len(self.isco08) == 4
                else common_pb2.RESOLUTION_DECISION_ANCESTOR,
                score=round(self.score, 4),
            )
        )


def alias_key(title: str, lang: str = "") -> str:
    """How an SPE's alias table keys a title: the folded title, with its language when known."""
    return f"{lang}:{normalise(title)}"


# Bumped when the saved form changes (2: ESCO labels, and titles folded keeping every script;
# 3: every ESCO label by language, and the sources' names and digests).
FORMAT = 3
SHIPPED = Path(__file__).resolve().parent / "data" / "codelists.json.gz"


@dataclass
class CodeLists:
    version: str
    format: int = FORMAT
    isco_units: dict[str, dict[str, str]] = field(default_factory=dict)
    isco_groups: dict[str, dict[str, str]] = field(default_factory=dict)
    esco: dict[str, str] = field(default_factory=dict)
    # normalised ESCO occupation label (English or French, each gendered form) → URIs
    esco_labels: dict[str, list[str]] = field(default_factory=dict)
    rome_appellations: dict[str, list[list[str]]] = field(default_factory=dict)
    rome_fiches: dict[str, dict[str, object]] = field(default_factory=dict)
    jobtech: dict[str, list[str]] = field(default_factory=dict)
    # ESCO occupation URI → language → labels, the preferred label(s) first (each gendered form)
    occupation_labels: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # ESCO occupation URI → language → its preferred label (each gendered form)
    occupation_preferred: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # source key → file name and SHA-256 of the file it was built from
    sources: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- building and storing ------------------------------------------------------

    @classmethod
    def import_sources(cls, folder: Path) -> CodeLists:
        """Read the publishers' files from ``folder``. Raises FileNotFoundError naming a missing one."""
        digest = hashlib.sha256()
        rows: dict[str, list[dict[str, str]]] = {}
        sources = {}
        for key, name in SOURCES.items():
            path = folder / name
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + data)
            sources[key] = {"file": name, "sha256": hashlib.sha256(data).hexdigest()}
            # io.StringIO keeps the line breaks inside quoted cells (ESCO's altLabels hold one a line).
            rows[key] = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        lists = cls(version=digest.hexdigest()[:16], sources=sources)
        for lang in ("fr", "en"):
            for r in rows[f"esco_{lang}"]:
                uri = r["conceptUri"]
                labels = lists.occupation_labels.setdefault(uri, {}).setdefault(lang, [])
                lists.occupation_preferred.setdefault(uri, {})[lang] = [
                    " ".join(p.split()) for p in r["preferredLabel"].split("/") if p.strip()
                ]
                # "maçon/maçonne": both forms are preferred labels.
                for label in [*r["preferredLabel"].split("/"), *r["altLabels"].splitlines()]:
                    label = " ".join(label.split())
                    if label and label not in labels:
                        labels.append(label)
                if r["iscoGroup"] and uri not in lists.esco:
                    lists.esco[uri] = r["iscoGroup"]
        for r in rows["isco_units"]:
            lists.isco_units[r["isco08_code"]] = {
                "en": r["title_en"],
                "fr": r["title_fr"],
                "major": r["major"],
                "sub_major": r["sub_major"],
                "minor": r["minor"],
            }
        for r in rows["isco_groups"]:
            lists.isco_groups[r["isco08_code"]] = {
                "level": r["level"],
                "en": r["title_en"],
                "fr": r["title_fr"],
            }
        for r in rows["esco"]:
            lists.esco[r["esco_occupation_uri"]] = r["isco08_unit"]
            # French labels give both forms: "officier de marine/officière de marine".
            for label in [r["label_en"], *r["label_fr"].split("/")]:
                uris = lists.esco_labels.setdefault(normalise(label), [])
                if label.strip() and r["esco_occupation_uri"] not in uris:
                    uris.append(r["esco_occupation_uri"])
        for r in rows["rome_appellations"]:
            esco_uri = r["esco_uri"].replace("esco:", "http://data.europa.eu/esco/", 1)
            lists.rome_appellations.setdefault(normalise(r["appellation_label_fr"]), []).append(
                [r["rome_code"], r["isco08_unit_via_esco"], r["mapping_relation"], esco_uri]
            )
        for r in rows["rome_fiches"]:
            weights = {}
            for part in r["isco08_candidates(weighted)"].split(";"):
                code, _, weight = part.strip().partition(":")
                if code:
                    weights[code] = float(weight or 0)
            lists.rome_fiches[r["rome_code"]] = {"label": r["rome_label_fr"], "candidates": weights}
        for r in rows["jobtech"]:
            lists.jobtech.setdefault(r["jobtech_concept_id"], [])
            if (
                r["isco08_unit_via_esco"]
                and r["isco08_unit_via_esco"] not in lists.jobtech[r["jobtech_concept_id"]]
            ):
                lists.jobtech[r["jobtech_concept_id"]].append(r["isco08_unit_via_esco"])
        return lists

    def _saved(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- the resolver and the SPE's aliases (kept beside the lists, never saved with them) --------

    def resolver(self) -> Any:
        """The occupation resolver over these lists (adapters.resolver), built once per process
        for the same lists (about 2 s), whoever holds a copy of them."""
        key = (self.version, id(self.occupation_labels))
        found = _RESOLVERS.get(key)
        if found is None:
            from adapters.resolver import Resolver

            found = _RESOLVERS[key] = Resolver(self)
        return found

    def use_aliases(self, aliases: dict[str, dict[str, str]]) -> None:
        """The SPE's own reviewed answers (``alias_key`` → {"isco08", "esco_uri"}): they win over
        the resolver for exactly those titles."""
        self.__dict__["_aliases"] = dict(aliases)

    def _alias(self, title: str, lang: str) -> Resolution | None:
        aliases: dict[str, dict[str, str]] = self.__dict__.get("_aliases") or {}
        found = aliases.get(alias_key(title, lang)) or aliases.get(alias_key(title))
        if found is None:
            return None
        isco = found["isco08"]
        return Resolution(
            isco,
            "the SPE's alias for this title",
            "unit_group" if len(isco) == 4 else "ancestor",
            1.0,
            "alias",
            found.get("esco_uri", ""),
        )

    @classmethod
    def shipped(cls) -> CodeLists:
        """The code lists shipped with the hub (adapters/data, built by ``spe-hub codelists import
        DIR --ship`` from the publishers' files named in adapters/data/SOURCES.md). Read once per
        process; each caller gets its own copy, so that one SPE's aliases are not another's."""
        return copy.copy(_shipped())

    def save_shipped(self, path: Path = SHIPPED) -> Path:
        """Write the lists as the shipped artefact (gzip, reproducible: no timestamp), and the
        provenance page beside it. Returns the artefact's path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(self._saved(), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
            out.write(body)
        (path.parent / "SOURCES.md").write_text(self.provenance(), encoding="utf-8")
        return path

    def provenance(self) -> str:
        """The page naming each source of these lists, its digest, and its licence or attribution."""
        lines = [
            "# Sources of the shipped code lists",
            "",
            f"`codelists.json.gz` is version `{self.version}` (format {self.format}), built by the hub's own",
            "importer (`spe-hub codelists import DIR --ship`) from the publishers' files below. ESCO",
            "classification © European Union, 2010–2026; reuse authorised under Commission Decision",
            "2011/833/EU, with attribution; the ESCO and ROME data are used unchanged except for selection",
            "and folding of labels. Written by the importer: do not edit.",
            "",
            "| source | file | SHA-256 | what it is, publisher and terms |",
            "|---|---|---|---|",
        ]
        for key, src in sorted(self.sources.items()):
            lines.append(f"| {key} | `{src['file']}` | `{src['sha256'][:16]}…` | {PROVENANCE.get(key, '')} |")
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> Path:
        """Write ``<version>.json`` and point ``current.json`` at it. Returns the versioned file."""
        folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps(self._saved(), ensure_ascii=False, sort_keys=True).encode()
        versioned = folder / f"{self.version}.json"
        versioned.write_bytes(body)
        (folder / "current.json").write_bytes(body)
        return versioned

    @classmethod
    def load(cls, path: Path) -> CodeLists:
        """A saved code list file (``current.json`` of the import folder)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{path} was written by an older spe-hub (format {data.get('format', 1)}, now {FORMAT}): "
                "run `spe-hub codelists import` again"
            )
        return cls(**data)

    # -- using -------------------------------------------------------------------------

    def is_unit(self, code: str) -> bool:
        return code in self.isco_units

    def resolve_esco(self, uri: str) -> Resolution:
        """ISCO-08 of an ESCO occupation URI (the ``esco:`` short form is accepted)."""
        full = uri.replace("esco:", "http://data.europa.eu/esco/", 1) if uri.startswith("esco:") else uri
        isco = self.esco.get(full)
        if isco and self.is_unit(isco):
            return Resolution(isco, "ESCO occupation", method="esco_uri", esco_uri=full, score=1.0)
        return Resolution(None, f"ESCO occupation {uri} is not in the code lists (version {self.version})")

    def resolve_title(
        self, title: str, lang: str = "", within: frozenset[str] | None = None, method: str = "title"
    ) -> Resolution:
        """ISCO-08 for a job title as people write it, at the level the evidence supports: the SPE's
        alias if it has one, else the resolver's decision (adapters.resolver). ``within``: only
        these unit groups (those a national code allows). Abstained: isco08 None, with suggestions."""
        if not normalise(title):
            return Resolution(None, "no occupation code and no job title", "abstained")
        alias = self._alias(title, lang)
        if alias is not None:
            return alias
        answer = self.resolver().resolve(title, lang, within)
        suggestions = tuple((c.isco08, c.uri, c.label, c.score) for c in answer.candidates[:3])
        if answer.decision == "abstained":
            return Resolution(
                None,
                "the job title is not clear enough for an ISCO-08 group: held for review "
                f"(best: {', '.join(f'{c[0]} {c[2]!r}' for c in suggestions) or 'none'})",
                "abstained",
                answer.score,
                method,
                suggestions=suggestions,
            )
        how = (
            "job title"
            if answer.decision == "unit_group"
            else f"job title, known only at ISCO-08 group {answer.isco08}"
        )
        return Resolution(
            answer.isco08, how, answer.decision, answer.score, method, answer.esco_uri, suggestions
        )

    def resolve_rome(self, rome_code: str, appellation_label: str = "") -> Resolution:
        """ISCO-08 for a ROME (or ROME-derived ROAME) code, without guessing.

        First the job title, if given, through the official ESCO–ROME mapping
        (exact or close matches only); then the ROME fiche if all its weight
        falls on one unit group. Otherwise None, saying which candidates there were.
        """
        if appellation_label:
            matches = {
                isco
                for rome, isco, relation, *_ in self.rome_appellations.get(normalise(appellation_label), [])
                if rome == rome_code and relation in TRUSTED_RELATIONS and self.is_unit(isco)
            }
            if len(matches) == 1:
                return Resolution(
                    matches.pop(), "appellation via ESCO", method="national_code_and_title", score=1.0
                )
        fiche = self.rome_fiches.get(rome_code)
        if fiche is None:
            return Resolution(None, f"ROME {rome_code} is not in the code lists (version {self.version})")
        candidates = fiche["candidates"]
        assert isinstance(candidates, dict)
        if len(candidates) == 1:
            return Resolution(
                next(iter(candidates)),
                "ROME fiche, single ISCO-08 unit group",
                method="national_code",
                score=1.0,
            )
        # A fiche spanning several unit groups: the title decides among those only...
        if appellation_label:
            by_title = self.resolve_title(
                appellation_label, "fr", frozenset(candidates), method="national_code_and_title"
            )
            if by_title.isco08 is not None:
                return by_title
        # ...else their common group, if they have one.
        common = _common_prefix(list(candidates))[:3]
        if common:
            return Resolution(
                common,
                f"ROME {rome_code} spans several ISCO-08 unit groups, all in group {common}",
                "ancestor",
                1.0,
                "national_code",
            )
        ranked = ", ".join(f"{c} ({w:g})" for c, w in sorted(candidates.items(), key=lambda kv: -kv[1])[:5])
        return Resolution(
            None,
            f"ROME {rome_code} spans several ISCO-08 unit groups ({ranked}) with nothing in common; "
            "the job title did not settle it: held for review",
            "abstained",
            method="national_code",
            suggestions=tuple(
                (c, "", str(fiche.get("label", "")), w)
                for c, w in sorted(candidates.items(), key=lambda kv: -kv[1])[:3]
            ),
        )


@dataclass(frozen=True)
class IntegrityReport:
    units: int
    missing_parents: list[str]
    dangling: dict[str, list[str]]
    unmapped: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.missing_parents and not any(self.dangling.values())


def integrity(lists: CodeLists) -> IntegrityReport:
    """Check the hierarchy and every crosswalk target; count what maps to nothing."""
    missing = [
        f"{code}: {level} {unit[level]}"
        for code, unit in sorted(lists.isco_units.items())
        for level in ("major", "sub_major", "minor")
        if unit[level] not in lists.isco_groups
    ]
    dangling = {
        "esco": sorted({i for i in lists.esco.values() if i and not lists.is_unit(i)}),
        "rome_appellations": sorted(
            {
                isco
                for rows in lists.rome_appellations.values()
                for _, isco, *_ in rows
                if isco and not lists.is_unit(isco)
            }
        ),
        "rome_fiches": sorted(
            {c for f in lists.rome_fiches.values() for c in _candidates(f) if not lists.is_unit(c)}
        ),
        "jobtech": sorted({i for codes in lists.jobtech.values() for i in codes if not lists.is_unit(i)}),
    }
    unmapped = {
        "esco": sum(1 for i in lists.esco.values() if not i),
        "rome_appellations": sum(
            1 for rows in lists.rome_appellations.values() for _, isco, *_ in rows if not isco
        ),
        "rome_fiches_ambiguous": sum(1 for f in lists.rome_fiches.values() if len(_candidates(f)) != 1),
        "jobtech": sum(1 for codes in lists.jobtech.values() if not codes),
    }
    return IntegrityReport(len(lists.isco_units), missing, dangling, unmapped)


# One resolver per code lists version (and their label table) in the process.
_RESOLVERS: dict[tuple[str, int], Any] = {}


@functools.lru_cache(maxsize=1)
def _shipped() -> CodeLists:
    with gzip.open(SHIPPED, "rb") as handle:
        data = json.loads(handle.read())
    return CodeLists(**data)


def _common_prefix(codes: list[str]) -> str:
    prefix = codes[0] if codes else ""
    for code in codes[1:]:
        while not code.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _candidates(fiche: dict[str, object]) -> list[str]:
    """The ISCO-08 unit groups a ROME fiche's titles map to."""
    found = fiche.get("candidates")
    return [str(c) for c in found] if isinstance(found, list | dict) else []
