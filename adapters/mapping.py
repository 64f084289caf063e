"""Mapping files of tabular exports (TOML): read strictly, so that a mistake stops the run before
the first row instead of dropping data silently.

Every key must be one the adapter reads: an unknown key in [columns], [source] or [consent], a
[values.*] table the mapping never uses, or a mapped column the export's header does not have
is an AdapterError naming the mapping file's line and the nearest valid name ("did you mean
telephone?"). docs/onboarding.md documents every key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from spehub.v1 import consent_pb2

from adapters.base import AdapterError
from adapters.codelists import normalise
from adapters.people import CEFR, MOBILITY

SYSTEMS = ("ROME", "ROAME", "ISCO08", "TITLE")
# What an SPE's import file can receive of a job offer, in this order by default.
OFFER_FIELDS = (
    "record_id",
    "origin",
    "title",
    "isco08_code",
    "occupation_label",
    "national_code",
    "employer",
    "work_country",
    "locality",
    "positions",
    "mobility",
    "start_date",
    "season_end",
    "deadline",
    "pay",
    "weekly_hours",
    "languages",
    "skills",
    "description",
)
COLUMNS = (
    "national_id",
    "family_name",
    "given_names",
    "other_family_name",  # the names in a second script ([source] other_script)
    "other_given_names",
    "birth_date",
    "nationality",
    "phone",
    "email",
    "occupation_code",
    "occupation_title",
    "national_code",  # a national occupation code kept beside the title ([source] national_code_system)
    "languages",
    "desired_countries",
    "mobility",
    "available_from",
    "summary",
)
SOURCE_KEYS = (
    "participant_id",
    "country",
    "language",
    "delimiter",
    "date_format",
    "occupation_system",
    "national_code_system",
    "other_script",
    "list_separator",
)
CONSENT_KEYS = ("date", "form_version", "reference", "purposes", "collected_by", "channel", "forms")
FORM_KEYS = (
    "purposes",
    "recipients",
    "transfer_basis",
    "basis_reference",
    "notice_sha256",
    "notice_language",
    "data_categories",
    "valid_days",
)
PURPOSES = ("POOL_SEARCH", "MATCHING", "REFERRAL", "CONTACT_RELEASE", "STATISTICS")
BASES = ("ADEQUACY", "AUTHORITY_AGREEMENT", "DPA_AUTHORISATION", "EXPLICIT_CONSENT")
CATEGORIES = ("PROFESSIONAL", "IDENTITY", "CONTACT")
CHANNELS = ("COUNSELLOR", "WEB", "SMS_USSD", "PAPER")
# [values.NAME] tables, and the column each translates (a table for a column not mapped is unused).
VALUE_TABLES = {
    "cefr": "languages",
    "language": "languages",
    "mobility": "mobility",
    "country": ("nationality", "desired_countries"),
    "purpose": "consent.purposes",
}
_PARTICIPANT = re.compile(r"[a-z0-9][a-z0-9.-]{1,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ConsentForm:
    """What one version of an SPE's consent form covers."""

    purposes: tuple[str, ...]
    recipient_countries: tuple[str, ...]
    recipient_participants: tuple[str, ...]
    transfer_basis: str
    basis_reference: str
    notice_sha256: str
    notice_language: str
    data_categories: tuple[str, ...]
    valid_for: timedelta

    def terms(self) -> dict[str, str]:
        """What the form covers, field by field (the mapping's key names, lists sorted): what a
        gateway fixes for the version once consents were published under it."""
        return {
            "purposes": ", ".join(sorted(self.purposes)),
            "recipients": ", ".join(sorted(self.recipient_countries + self.recipient_participants)),
            "transfer_basis": self.transfer_basis,
            "basis_reference": self.basis_reference,
            "notice_sha256": self.notice_sha256,
            "notice_language": self.notice_language,
            "data_categories": ", ".join(sorted(self.data_categories)),
            "valid_days": str(self.valid_for.days),
        }


def consent_terms(consent: consent_pb2.Consent) -> dict[str, str]:
    """What a form covers, as far as one consent published under it shows (``ConsentForm.terms``
    but for the purposes: a row may tick only some of the form's). For an outbox that published
    consents before forms were recorded."""
    basis = (
        consent.recipients[0].transfer_basis if consent.recipients else consent_pb2.TRANSFER_BASIS_UNSPECIFIED
    )
    return {
        "recipients": ", ".join(sorted(r.country_code or r.participant_id for r in consent.recipients)),
        "transfer_basis": consent_pb2.TransferBasis.Name(basis).removeprefix("TRANSFER_BASIS_"),
        "basis_reference": consent.recipients[0].basis_reference if consent.recipients else "",
        "notice_sha256": consent.evidence.notice_sha256,
        "notice_language": consent.purposes[0].notice_language_code if consent.purposes else "",
        "data_categories": ", ".join(
            sorted(
                consent_pb2.DataCategory.Name(c).removeprefix("DATA_CATEGORY_")
                for c in consent.data_categories
            )
        ),
        "valid_days": str(consent.retention_days),
    }


@dataclass(frozen=True)
class ConsentMapping:
    """[consent]: the columns that hold a candidate's consent, and what each form version covers."""

    date: str
    form_version: str
    forms: dict[str, ConsentForm]
    reference: str = ""
    purposes: str = ""
    collected_by: str = ""
    channel: str = "COUNSELLOR"


@dataclass(frozen=True)
class Mapping:
    """A validated mapping file."""

    participant_id: str
    country: str
    language: str
    delimiter: str
    date_format: str
    columns: dict[str, str]
    occupation_system: str
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    list_separator: str = ","
    # Where the SPE wants the offers it receives: common field → column of its import file.
    offer_columns: dict[str, str] = field(default_factory=lambda: {f: f for f in OFFER_FIELDS})
    consent: ConsentMapping | None = None
    national_code_system: str = ""
    other_script: str = ""
    path: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # "columns.phone" → its line in the file

    def where(self, key: str) -> str:
        """``file:line`` of a key ("columns.phone"), or the file alone."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else self.path

    @classmethod
    def load(cls, path: Path) -> Mapping:
        """Read and check a mapping file. Raises AdapterError naming the line and key at fault."""
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AdapterError(f"{path}: not a readable TOML mapping ({exc})") from exc
        lines = _key_lines(text)

        def fail(key: str, reason: str) -> AdapterError:
            line = lines.get(key)
            return AdapterError(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")

        def known(section: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
            for key in table:
                if key not in allowed:
                    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                    hint = f" (did you mean {near[0]}?)" if near else f"; use one of {', '.join(allowed)}"
                    raise fail(f"{section}.{key}", f"[{section}] has no key {key!r}{hint}")

        for section in data:
            if section not in ("source", "columns", "values", "offer_columns", "consent"):
                raise fail(section, f"unknown section [{section}]")
        try:
            source, columns = data["source"], data["columns"]
        except KeyError as exc:
            raise AdapterError(f"{path}: missing [{exc.args[0]}]") from None
        known("source", source, SOURCE_KEYS)
        known("columns", columns, COLUMNS)
        for key in ("participant_id", "country", "date_format"):
            if key not in source:
                raise AdapterError(f"{path}: [source] needs {key!r}")
        values = {k: {normalise(a): b for a, b in v.items()} for k, v in data.get("values", {}).items()}
        mapping = cls(
            participant_id=source["participant_id"],
            country=source["country"],
            language=source.get("language", "fr"),
            delimiter=source.get("delimiter", ""),
            date_format=source["date_format"],
            columns=dict(columns),
            occupation_system=source.get("occupation_system", "ROAME"),
            values=values,
            list_separator=source.get("list_separator", ","),
            offer_columns=dict(data.get("offer_columns") or {f: f for f in OFFER_FIELDS}),
            consent=_consent(data.get("consent"), fail, known) if "consent" in data else None,
            national_code_system=source.get("national_code_system", ""),
            other_script=source.get("other_script", ""),
            path=str(path),
            lines=lines,
        )
        occupation = "occupation_title" if mapping.occupation_system == "TITLE" else "occupation_code"
        missing = [c for c in ("national_id", "family_name", occupation) if c not in mapping.columns]
        if missing:
            raise fail("columns", f"[columns] needs {missing}")
        unknown = sorted(set(mapping.offer_columns) - set(OFFER_FIELDS))
        if unknown:
            raise fail(
                f"offer_columns.{unknown[0]}",
                f"[offer_columns] has unknown fields {unknown}; use {list(OFFER_FIELDS)}",
            )
        if mapping.occupation_system not in SYSTEMS:
            raise fail("source.occupation_system", f"source.occupation_system must be one of {SYSTEMS}")
        if "national_code" in mapping.columns and not mapping.national_code_system:
            raise fail(
                "columns.national_code",
                "[columns] national_code needs [source] national_code_system (REM, SSYK…)",
            )
        if ("other_family_name" in mapping.columns) != bool(mapping.other_script):
            raise fail(
                "source.other_script",
                "[columns] other_family_name and [source] other_script (ISO 15924: Arab, Latn) go together",
            )
        if mapping.other_script and not re.fullmatch(r"[A-Z][a-z]{3}", mapping.other_script):
            raise fail("source.other_script", "other_script must be an ISO 15924 code such as Arab or Latn")
        for name, table in data.get("values", {}).items():
            uses = VALUE_TABLES.get(name)
            if uses is None:
                near = difflib.get_close_matches(name, list(VALUE_TABLES), n=1, cutoff=0.6)
                hint = f" (did you mean values.{near[0]}?)" if near else f"; use {sorted(VALUE_TABLES)}"
                raise fail(f"values.{name}", f"[values.{name}] is not a table the adapter reads{hint}")
            targets = (uses,) if isinstance(uses, str) else uses
            used = any(
                (t == "consent.purposes" and mapping.consent is not None and mapping.consent.purposes)
                or t in mapping.columns
                for t in targets
            )
            if not used:
                raise fail(
                    f"values.{name}",
                    f"[values.{name}] is never used: no column {' or '.join(targets)} is mapped",
                )
            if len(values[name]) != len(table):
                raise fail(
                    f"values.{name}",
                    f"[values.{name}] has words that differ only by case, accents or spacing",
                )
        for name, table in values.items():
            allowed: Collection[str] | None = {
                "cefr": CEFR,
                "mobility": MOBILITY,
                "purpose": PURPOSES,
            }.get(name)
            if name in ("country", "language"):
                width = "ISO 3166-1 alpha-2" if name == "country" else "ISO 639"
                bad = [
                    v
                    for v in table.values()
                    if not (
                        v.isalpha()
                        and (
                            v.isupper() and len(v) == 2 if name == "country" else v.islower() and len(v) <= 3
                        )
                    )
                ]
                if bad:
                    raise fail(f"values.{name}", f"[values.{name}] maps to {bad}: use {width} codes")
            elif allowed is not None:
                bad = [v for v in table.values() if v not in allowed]
                if bad:
                    raise fail(
                        f"values.{name}",
                        f"[values.{name}] maps to unknown values {bad}; use {sorted(allowed)}",
                    )
        return mapping

    def check_header(self, header: list[str], export: str) -> None:
        """Every mapped column must be in the export's header: else an AdapterError naming the
        mapping's line and the nearest column of the header."""
        present = set(header)
        mapped = [(f"columns.{k}", v) for k, v in self.columns.items()]
        if self.consent is not None:
            for key in ("date", "form_version", "reference", "purposes", "collected_by"):
                column = getattr(self.consent, key)
                if column:
                    mapped.append((f"consent.{key}", column))
        for key, column in mapped:
            if column not in present:
                near = difflib.get_close_matches(column, header, n=1, cutoff=0.5)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise AdapterError(
                    f"{self.where(key)}: {key} names the column {column!r}, which the header of "
                    f"{export} does not have{hint}"
                )


def _consent(section: Any, fail: Any, known: Any) -> ConsentMapping:
    if not isinstance(section, dict):
        raise fail("consent", "[consent] must be a table")
    known("consent", section, CONSENT_KEYS)
    for key in ("date", "form_version", "forms"):
        if key not in section:
            raise fail("consent", f"[consent] needs {key!r}")
    channel = section.get("channel", "COUNSELLOR")
    if channel not in CHANNELS:
        raise fail("consent.channel", f"[consent] channel must be one of {CHANNELS}")
    forms: dict[str, ConsentForm] = {}
    for version, form in section["forms"].items():
        where = f"consent.forms.{version}"
        known(where, form, FORM_KEYS)

        def need(key: str, form: dict[str, Any] = form, where: str = where) -> Any:
            if key not in form:
                raise fail(where, f"[{where}] needs {key!r}")
            return form[key]

        purposes = tuple(need("purposes"))
        recipients = tuple(need("recipients"))
        categories = tuple(form.get("data_categories", ["PROFESSIONAL"]))
        basis = need("transfer_basis")
        for bad, allowed, key in (
            ([p for p in purposes if p not in PURPOSES], PURPOSES, "purposes"),
            ([c for c in categories if c not in CATEGORIES], CATEGORIES, "data_categories"),
            ([basis] if basis not in BASES else [], BASES, "transfer_basis"),
        ):
            if bad:
                raise fail(f"{where}.{key}", f"[{where}] {key} has {bad}; use {list(allowed)}")
        countries = tuple(r for r in recipients if len(r) == 2 and r.isalpha() and r.isupper())
        participants = tuple(r for r in recipients if r not in countries)
        wrong = [r for r in participants if not _PARTICIPANT.fullmatch(r)]
        if wrong or not recipients:
            raise fail(
                f"{where}.recipients",
                f"[{where}] recipients are ISO country codes (FR) or participant ids (fr-francetravail)"
                + (f": not {wrong}" if wrong else ""),
            )
        notice = str(need("notice_sha256"))
        if not _HEX64.fullmatch(notice):
            raise fail(
                f"{where}.notice_sha256", f"[{where}] notice_sha256 is the SHA-256 of the notice, in hex"
            )
        days = int(form.get("valid_days", 365))
        if not 1 <= days <= 3650:
            raise fail(f"{where}.valid_days", f"[{where}] valid_days must be 1 to 3650")
        forms[str(version)] = ConsentForm(
            purposes=purposes,
            recipient_countries=countries,
            recipient_participants=participants,
            transfer_basis=basis,
            basis_reference=str(form.get("basis_reference", "")),
            notice_sha256=notice,
            notice_language=str(form.get("notice_language", "fr")),
            data_categories=categories,
            valid_for=timedelta(days=days),
        )
    if not forms:
        raise fail("consent", "[consent.forms] needs at least one form version")
    return ConsentMapping(
        date=section["date"],
        form_version=section["form_version"],
        forms=forms,
        reference=section.get("reference", ""),
        purposes=section.get("purposes", ""),
        collected_by=section.get("collected_by", ""),
        channel=channel,
    )


_TABLE = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?")
_PART = re.compile(r"\"[^\"]*\"|'[^']*'|[^.\s]+")
_KEY = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """The line of each table and key of a TOML file, by dotted path ("columns.phone",
    "consent.forms.2025-1"): tomllib gives values only, and an error must say where."""
    lines: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.fullmatch(line)
        if header:
            table = ".".join(p.strip("\"'") for p in _PART.findall(header.group(1)))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(f"{table}.{key.group(1).strip(chr(34) + chr(39))}", number)
    return lines
