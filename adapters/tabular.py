"""Tabular exports (CSV) of African SPEs, read through a declarative mapping file: no Python per SPE.

A mapping file (TOML, see adapters/mappings/ and docs/onboarding.md) says which
column feeds which field, the date format, the occupation code system, value
translations in the export's language, and the country for phone numbers.
Each row gives two records, the candidate profile and the personal details,
both keyed by a pseudonymous id: HMAC-SHA256 of the national job-seeker number
under the SPE's own key, so the number never leaves the SPE.

A row is converted whole or reported whole (file, line, column, reason): an
unknown occupation code, a bad date, an invalid phone number, a level that
is not translated — never guessed. A repeated job-seeker is reported.
"""

from __future__ import annotations

import csv
import hmac
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from spehub.v1 import common_pb2, consent_pb2, offer_pb2, profile_pb2

from adapters import parallel
from adapters.base import Converted, Problem
from adapters.codelists import CodeLists, Resolution, normalise
from adapters.languages import LanguageReader
from adapters.limits import READ_BYTES, BoundedLines, LimitExceeded
from adapters.mapping import OFFER_FIELDS, SYSTEMS, ConsentMapping, Mapping
from adapters.people import CEFR, CEFR_NAMES, MOBILITY, Pseudonyms, e164

__all__ = ["OFFER_FIELDS", "SYSTEMS", "Mapping", "TabularAdapter"]

# Exports this large are converted by one process per core (smaller ones are not worth starting them).
PARALLEL_FROM_BYTES = 8_000_000
CHUNK_ROWS = 2_000
PAY_PERIODS = {1: "hour", 2: "day", 3: "week", 4: "month", 5: "year"}
# How far after the export's time (now) a consent date may be: time zones and clocks differ by
# hours, never by days. A later date is a mistake in the register and refuses the row (the hub
# refuses such a consent too: hub.domain.consent_policy.FUTURE_SKEW).
CONSENT_DATE_SKEW = timedelta(days=1)


class TabularAdapter:
    """A CSV export read through a mapping file."""

    name = "tabular"

    def __init__(
        self,
        codelists: CodeLists,
        mapping: Path | Mapping,
        subject_key: bytes,
        workers: int | None = None,
        **_: Any,
    ) -> None:
        self.codelists = codelists
        self.workers = workers
        self.mapping = mapping if isinstance(mapping, Mapping) else Mapping.load(mapping)
        # The record key of a job-seeker: HMAC of the national number under the SPE's key.
        self.pseudonym = Pseudonyms(subject_key)
        self.subject_key = subject_key
        self._day_month_year = _date_pattern(self.mapping.date_format)
        self.languages = LanguageReader(self.mapping.values.get("language"), self.mapping.values.get("cefr"))

    def consent_forms(self) -> dict[str, dict[str, str]]:
        """What each form version of the mapping covers (``ConsentForm.terms``), by version."""
        consent = self.mapping.consent
        return {} if consent is None else {v: form.terms() for v, form in consent.forms.items()}

    def read(self, path: Path) -> Iterator[Converted]:
        """Two records per good row (profile, personal details), in order; a bad row comes back once, with problems.

        CSV (any delimiter, BOM, Windows line endings) or XLSX (first sheet); both are streamed.
        An export of PARALLEL_FROM_BYTES or more is converted by ``workers`` processes (default:
        one per core), chunk by chunk, with a bounded number of chunks in flight; the order of the
        output and the duplicate check are the same as with one process.
        """
        xlsx = path.suffix.lower() in (".xlsx", ".xlsm")
        stop = _Stop()
        try:
            header, rows = _xlsx_rows(path) if xlsx else self._csv_rows(path, stop)
        except _ReadFault as exc:
            where = f"{path}:1"
            yield Converted(where, None, (Problem(where, "header", str(exc)),))
            return
        self.mapping.check_header(header, str(path))  # before the first row: a wrong name drops nothing
        workers = self.workers
        if workers is None:
            workers = (os.cpu_count() or 1) if path.stat().st_size >= PARALLEL_FROM_BYTES else 1
        seen = _SeenRows()  # on disk: memory stays flat however many rows the export has
        column = self.mapping.columns["national_id"]
        chunks: Iterator[list[tuple[int, str | None, Any]]]
        try:
            if workers <= 1:
                chunks = (
                    [(line, self._key(row), row) for line, row in _as_dicts(header, c)] for c in _chunks(rows)
                )
            else:
                chunks = self._in_processes(path, header, rows, workers)
            for chunk in chunks:
                earlier = seen.earlier_lines([(key, line) for line, key, _ in chunk if key])
                for line, key, row in chunk:
                    where = f"{path}:{line}"
                    if line in earlier:
                        reason = f"the same job-seeker as line {earlier[line]}"
                        yield Converted(where, None, (Problem(where, column, reason),))
                    elif isinstance(row, dict):
                        yield from self.convert_row(row, where, key)
                    else:
                        yield from parallel.unpack(row)  # converted by a worker process
        finally:
            seen.close()
        if stop.reason:  # the rows before it were read; nothing after it is
            where = f"{path}:{stop.line}"
            yield Converted(where, None, (Problem(where, "row", stop.reason),))

    def _key(self, row: dict[str, Any]) -> str | None:
        """The pseudonym of the row's job-seeker, or None when the row has no national number."""
        national = (row.get(self.mapping.columns["national_id"]) or "").strip()
        return self.pseudonym(national) if national else None

    def _in_processes(
        self, path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]], workers: int
    ) -> Iterator[list[tuple[int, str | None, Any]]]:
        """Chunks of (line, key, records) of every row, converted in ``workers`` processes, in file order."""
        chunks = ((str(path), header, chunk) for chunk in _chunks(rows))
        return parallel.ordered(self, _convert_chunk, chunks, workers)

    def _csv_rows(self, path: Path, stop: _Stop) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
        """The header and the (line, cells) of each non-blank row, streamed. Each row is bounded
        (MAX_RECORD_BYTES, and csv's cell limit): past a bound, or at bytes that are not UTF-8,
        the rows stop and ``stop`` says where and why. Raises _ReadFault if the header is such."""
        handle = path.open(encoding="utf-8-sig", newline="")
        try:
            first = handle.readline(READ_BYTES)  # enough to tell the delimiter
            handle.seek(0)  # the utf-8-sig decoder drops a byte-order mark again after seeking back
            delimiter = self.mapping.delimiter or csv.Sniffer().sniff(first or ",", ";,\t").delimiter
            lines = BoundedLines(handle)
            reader = csv.reader(lines, delimiter=delimiter)
            header = next(reader, [])
        except (LimitExceeded, csv.Error, UnicodeDecodeError) as exc:
            handle.close()
            raise _ReadFault(_csv_fault(exc)) from exc

        def rows() -> Iterator[tuple[int, list[str]]]:
            with handle:
                ended = reader.line_num  # the last line of the last row read
                try:
                    lines.row_read()
                    for cells in reader:
                        lines.row_read()
                        ended = reader.line_num
                        if cells:
                            yield ended, cells
                except (LimitExceeded, csv.Error, UnicodeDecodeError) as exc:
                    stop.line, stop.reason = ended + 1, _csv_fault(exc)  # where the row began

        return header, rows()

    def convert_row(self, row: dict[str, Any], where: str, key: str | None = None) -> Iterator[Converted]:
        """The two records of a row, or the row once with its problems (``key``: its pseudonym, if known)."""
        problems: list[Problem] = []
        cols = self.mapping.columns

        def cell(name: str) -> str:
            column = cols.get(name)
            return (row.get(column) or "").strip() if column else ""

        def error(name: str, reason: str, severity: str = "error") -> None:
            problems.append(Problem(where, cols.get(name, name), reason, severity))

        national = cell("national_id")
        if not national:
            error("national_id", "empty: the job-seeker cannot be keyed")
        key = key or self.pseudonym(national)
        origin = self.mapping.participant_id
        profile = profile_pb2.CandidateProfile()
        profile.header.record_id, profile.header.origin_participant_id, profile.header.version = (
            f"P-{key}",
            origin,
            1,
        )
        profile.consent_record_id = f"C-{key}"
        profile.residence_country_code = self.mapping.country
        self._occupation(profile, cell("occupation_code"), cell("occupation_title"), error)
        if cell("national_code") and not profile.occupations[0].national_code.code:
            # A national code (REM, SSYK…) is kept with its system, whatever decided the ISCO group.
            profile.occupations[0].national_code.CopyFrom(
                common_pb2.NationalCode(
                    system=self.mapping.national_code_system,
                    code=cell("national_code"),
                    label=cell("occupation_title"),
                )
            )
        for text in self._list(cell("languages")):
            entry = self.languages.entry(text)
            if entry.problem:
                error("languages", f"{text!r}: {entry.problem}: dropped", "warning")
            elif entry.code not in {lang.language_code for lang in profile.languages}:
                assert entry.code is not None and entry.level is not None  # no problem: both read
                profile.languages.add(language_code=entry.code, level=CEFR[entry.level])
        for country in self._list(cell("desired_countries")):
            code = self._country(country)
            if code is None:
                error(
                    "desired_countries",
                    "not an ISO 3166-1 alpha-2 code nor in [values.country]: dropped",
                    "warning",
                )
            else:
                profile.desired_country_codes.append(code)
        for word in self._list(cell("mobility")):
            value = self.mapping.values.get("mobility", {}).get(normalise(word))
            if value is None:
                error("mobility", f"{word!r} is not in [values.mobility]: dropped", "warning")
            else:
                profile.mobility_types.append(MOBILITY[value])  # type: ignore[arg-type]
        available = self._date(cell("available_from"), "available_from", error, "warning")
        if available:
            profile.available_from.CopyFrom(
                common_pb2.Date(year=available.year, month=available.month, day=available.day)
            )
        profile.summary = cell("summary")

        personal = profile_pb2.PersonalDetails()
        personal.header.record_id, personal.header.origin_participant_id, personal.header.version = (
            f"D-{key}",
            origin,
            1,
        )
        personal.profile_record_id, personal.consent_record_id = (
            profile.header.record_id,
            profile.consent_record_id,
        )
        personal.given_names, personal.family_name = cell("given_names"), cell("family_name")
        if not personal.family_name:
            error("family_name", "empty")
        if cell("other_family_name"):
            personal.other_scripts.add(
                script=self.mapping.other_script,
                family_name=cell("other_family_name"),
                given_names=cell("other_given_names"),
            )
        born = self._date(cell("birth_date"), "birth_date", error, "warning")
        if born:
            personal.birth_date.CopyFrom(common_pb2.Date(year=born.year, month=born.month, day=born.day))
        nationality = cell("nationality")
        if nationality:
            code = self._country(nationality)
            if code is None:
                error(
                    "nationality",
                    "not an ISO 3166-1 alpha-2 code nor in [values.country]: dropped",
                    "warning",
                )
            else:
                personal.nationality_country_codes.append(code)
        phone = cell("phone")
        if phone:
            number = e164(phone, self.mapping.country)
            if number is None:
                error("phone", f"not a valid phone number for {self.mapping.country}: dropped", "warning")
            else:
                personal.contacts.add(type=profile_pb2.CONTACT_TYPE_PHONE, value=number)
        email = cell("email")
        if email:
            personal.contacts.add(type=profile_pb2.CONTACT_TYPE_EMAIL, value=email)
        # A refused row is reported for its errors, not also as "kept local".
        refused = any(p.severity == "error" for p in problems)
        consent = None if refused else self._consent(row, key, national, cell, error)
        if any(p.severity == "error" for p in problems):
            yield Converted(where, None, tuple(problems))
            return
        # A profile whose occupation a person must decide is held (review); its personal details
        # too. A row without a consent is kept at the SPE (local): converted, never published.
        kept = tuple(p for p in problems if p.severity in ("review", "local"))
        if consent is not None:
            yield Converted(where, consent, kept)
        yield Converted(where, profile, tuple(problems))
        yield Converted(where, personal, kept)

    def _consent(
        self, row: dict[str, Any], key: str, national: str, cell: Any, error: Any
    ) -> consent_pb2.Consent | None:
        """The row's Consent record, from the [consent] columns and the form version's terms; None,
        with a "local" problem, when the row has no consent the hub may act on."""
        spec: ConsentMapping | None = self.mapping.consent
        if spec is None:
            error("consent", "the mapping has no [consent] section: kept at the SPE, not published", "local")
            return None
        written = cell_of(row, spec.date)
        if not written:
            error(spec.date, "no consent date: kept at the SPE, not published", "local")
            return None
        given = self._date(written, spec.date, error)
        if given is None:
            return None
        version = cell_of(row, spec.form_version)
        form = spec.forms.get(version)
        if form is None:
            known = ", ".join(sorted(spec.forms))
            error(spec.form_version, f"form version {version!r} is not in [consent.forms] ({known})")
            return None
        purposes = list(form.purposes)
        if spec.purposes:
            table = self.mapping.values.get("purpose", {})
            ticked = []
            for word in self._list(cell_of(row, spec.purposes)):
                name = table.get(normalise(word), word.strip().upper())
                if name not in form.purposes:
                    error(
                        spec.purposes, f"{word!r} is not a purpose form {version} covers ([values.purpose])"
                    )
                    return None
                ticked.append(name)
            purposes = list(dict.fromkeys(ticked))
            if not purposes:
                error(spec.purposes, "no purpose ticked: kept at the SPE, not published", "local")
                return None
        start = datetime(given.year, given.month, given.day, tzinfo=UTC)
        now = datetime.now(UTC)
        if start > now + CONSENT_DATE_SKEW:
            error(
                spec.date,
                f"the consent date is {(start - now).days + 1} day(s) after the export's date: a consent "
                f"is never dated ahead (more than {CONSENT_DATE_SKEW.days} day): correct the date",
            )
            return None
        if start + form.valid_for <= now:
            error(
                spec.date,
                f"the consent of form {version} has expired: kept at the SPE, not published",
                "local",
            )
            return None
        consent = consent_pb2.Consent(
            subject_ref=hmac.new(
                self.subject_key, b"consent-subject\0" + national.encode(), "sha256"
            ).hexdigest(),
            status=consent_pb2.CONSENT_STATUS_ACTIVE,
            retention_days=form.valid_for.days,
        )
        consent.header.record_id = f"C-{key}"
        consent.header.origin_participant_id = self.mapping.participant_id
        consent.header.version = 1
        for name in purposes:
            consent.purposes.add(
                purpose=consent_pb2.Purpose.Value(f"PURPOSE_{name}"),
                notice_version=version,
                notice_language_code=form.notice_language,
            )
        basis = consent_pb2.TransferBasis.Value(f"TRANSFER_BASIS_{form.transfer_basis}")
        for country in form.recipient_countries:
            consent.recipients.add(
                country_code=country, transfer_basis=basis, basis_reference=form.basis_reference
            )
        for participant in form.recipient_participants:
            consent.recipients.add(
                participant_id=participant, transfer_basis=basis, basis_reference=form.basis_reference
            )
        consent.data_categories.extend(
            consent_pb2.DataCategory.Value(f"DATA_CATEGORY_{c}") for c in form.data_categories
        )
        consent.valid_from.FromDatetime(start)
        consent.valid_until.FromDatetime(start + form.valid_for)
        consent.evidence.channel = consent_pb2.CollectionChannel.Value(f"COLLECTION_CHANNEL_{spec.channel}")
        consent.evidence.collected_at.FromDatetime(start)
        consent.evidence.collected_by = (
            cell_of(row, spec.collected_by) if spec.collected_by else ""
        ) or self.mapping.participant_id
        consent.evidence.notice_sha256 = form.notice_sha256
        consent.evidence.reference = cell_of(row, spec.reference) if spec.reference else ""
        return consent

    def _occupation(self, profile: profile_pb2.CandidateProfile, code: str, title: str, error: Any) -> None:
        """The occupation from the national code and the title, at the level the evidence supports
        (docs/occupations.md); a title the resolver abstains on holds the row for review."""
        system = self.mapping.occupation_system
        occupation = profile.occupations.add(title=title)

        def settle(resolution: Resolution, column: str) -> None:
            if resolution.isco08 is not None:
                resolution.apply(occupation)
            elif resolution.decision == "abstained" and resolution.suggestions:
                error(column, resolution.how, "review")
            else:
                error(column, resolution.how)

        if system == "ISCO08" and code:
            if not (self.codelists.is_unit(code) or code in self.codelists.isco_groups):
                error("occupation_code", f"{code!r} is not an ISCO-08 group")
            occupation.isco08_code = code
            occupation.resolution.CopyFrom(
                common_pb2.OccupationResolution(
                    method="isco_code",
                    decision=common_pb2.RESOLUTION_DECISION_UNIT_GROUP
                    if len(code) == 4
                    else common_pb2.RESOLUTION_DECISION_ANCESTOR,
                    score=1.0,
                )
            )
            return
        if system not in ("TITLE", "ISCO08") and code:
            # The national code is kept even when the title decides.
            occupation.national_code.CopyFrom(common_pb2.NationalCode(system=system, code=code, label=title))
            settle(self.codelists.resolve_rome(code, title), "occupation_code")
            return
        if not title:
            error("occupation_code" if system != "TITLE" else "occupation_title", "empty")
            return
        settle(self.codelists.resolve_title(title, self.mapping.language), "occupation_title")

    def _country(self, word: str) -> str | None:
        """An ISO code as written, or the code [values.country] gives a name ("Espagne", "إسبانيا")."""
        code = self.mapping.values.get("country", {}).get(normalise(word))
        if code:
            return code
        return word.strip().upper() if len(word.strip()) == 2 and word.strip().isalpha() else None

    def _list(self, value: str) -> list[str]:
        return [v.strip() for v in value.split(self.mapping.list_separator) if v.strip()] if value else []

    def _date(self, value: str, name: str, error: Any, severity: str = "error") -> date | None:
        """A date in the mapping's format; an unreadable one is reported with ``severity`` (a
        "warning" for an optional field, which is then dropped)."""
        if not value:
            return None
        found = self._day_month_year.fullmatch(value) if self._day_month_year else None
        if found:
            try:
                return date(int(found["Y"]), int(found["m"]), int(found["d"]))
            except ValueError:
                pass  # strptime below gives the verdict
        try:
            if any(c.isdigit() and not c.isascii() for c in value):  # strptime's %Y takes "٢٠٢٦"
                raise ValueError
            return datetime.strptime(value, self.mapping.date_format).date()
        except ValueError:
            # The value itself is not repeated: it may be a birth date.
            dropped = ": dropped" if severity == "warning" else ""
            error(name, f"not a valid date in the format {self.mapping.date_format}{dropped}", severity)
            return None

    def round_trip(self, record: Any, where: str) -> Any:
        """Profile → export columns → profile, for the conformance check (None for personal details,
        whose national number never leaves the SPE and so cannot be written back)."""
        if not isinstance(record, profile_pb2.CandidateProfile):
            return record
        row = {
            **self.write(record),
            self.mapping.columns["national_id"]: "round-trip",
            self.mapping.columns["family_name"]: "x",
        }
        again: Any = next(iter(self.convert_row(row, where))).record
        if again is None:
            return None
        again.header.CopyFrom(record.header)
        again.consent_record_id = record.consent_record_id
        return again

    def write_offer(self, offer: offer_pb2.JobOffer) -> dict[str, str]:
        """A received offer as a row of the SPE's import file ([offer_columns]), in its language and formats."""
        m = self.mapping
        back_mobility = {v: k for k, v in reversed(m.values.get("mobility", {}).items())}
        mobility = {v: k for k, v in MOBILITY.items()}
        language = "fr" if m.language == "fr" else "en"

        def day(d: common_pb2.Date) -> str:
            return date(d.year, d.month, d.day).strftime(m.date_format) if d.year else ""

        pay = ""
        if offer.HasField("pay"):
            low, high = offer.pay.min_minor_units / 100, offer.pay.max_minor_units / 100
            amount = f"{low:g}" if low == high else f"{low:g}-{high:g}"
            pay = f"{amount} {offer.pay.currency_code}/{PAY_PERIODS.get(offer.pay.period, '')}"
        word = mobility.get(offer.contract.mobility_type, "")
        values = {
            "record_id": offer.header.record_id,
            "origin": offer.header.origin_participant_id,
            "title": offer.title,
            "isco08_code": offer.occupation.isco08_code,
            "occupation_label": self.codelists.isco_units.get(offer.occupation.isco08_code, {}).get(
                language, ""
            ),
            "national_code": offer.occupation.national_code.code,
            "employer": offer.employer.name,
            "work_country": offer.place.country_code,
            "locality": offer.place.locality,
            "positions": str(offer.positions),
            "mobility": back_mobility.get(word, word.lower()),
            "start_date": day(offer.contract.start_date),
            "season_end": day(offer.contract.seasonal_window.end),
            "deadline": day(offer.application_deadline),
            "pay": pay,
            "weekly_hours": f"{offer.weekly_hours:g}" if offer.weekly_hours else "",
            "languages": m.list_separator.join(
                f"{lang.language_code}:{CEFR_NAMES[lang.level]}" for lang in offer.required_languages
            ),
            "skills": m.list_separator.join(s.label or s.esco_uri for s in offer.required_skills),
            "description": offer.description,
        }
        return {column: values[name] for name, column in m.offer_columns.items()}

    def write(self, record: Any) -> dict[str, str]:
        """A received offer as an import row; or the export columns a CandidateProfile fills (the inverse
        of the mapping, for round trips)."""
        if isinstance(record, offer_pb2.JobOffer):
            return self.write_offer(record)
        cols = self.mapping.columns
        levels = {v: k for k, v in CEFR.items()}
        mobility = {v: k for k, v in MOBILITY.items()}
        back = {name: {v: k for k, v in table.items()} for name, table in self.mapping.values.items()}
        out: dict[str, str] = {}
        if isinstance(record, profile_pb2.CandidateProfile):
            occ = record.occupations[0]
            if "occupation_code" in cols:
                out[cols["occupation_code"]] = occ.national_code.code or occ.isco08_code
            if "occupation_title" in cols:
                out[cols["occupation_title"]] = occ.title
            if "national_code" in cols:
                out[cols["national_code"]] = occ.national_code.code
            if "languages" in cols:
                out[cols["languages"]] = self.mapping.list_separator.join(
                    f"{lang.language_code}:{back.get('cefr', {}).get(levels[lang.level], levels[lang.level])}"
                    for lang in record.languages
                )
            if "desired_countries" in cols:
                out[cols["desired_countries"]] = self.mapping.list_separator.join(
                    record.desired_country_codes
                )
            if "mobility" in cols:
                out[cols["mobility"]] = self.mapping.list_separator.join(
                    back["mobility"][mobility[m]] for m in record.mobility_types
                )
            if "available_from" in cols and record.HasField("available_from"):
                d = record.available_from
                out[cols["available_from"]] = date(d.year, d.month, d.day).strftime(self.mapping.date_format)
        return out


def cell_of(row: dict[str, Any], column: str) -> str:
    return (row.get(column) or "").strip()


# What strptime accepts for each directive (CPython's _strptime), for the formats read without it.
_DIRECTIVES = {
    "%d": r"(?P<d>3[01]|[12][0-9]|0[1-9]|[1-9])",
    "%m": r"(?P<m>1[0-2]|0[1-9]|[1-9])",
    "%Y": r"(?P<Y>[0-9]{4})",
}


def _date_pattern(date_format: str) -> re.Pattern[str] | None:
    """A regular expression for a format made of %d, %m and %Y once each and literal separators
    ("%d/%m/%Y"), which reads a date ten times faster than strptime; None for any other format.
    It only ever accepts what strptime accepts; anything it does not match goes to strptime."""
    parts = re.split(r"(%.)", date_format)
    directives = [p for p in parts if p.startswith("%") and len(p) == 2]
    if sorted(directives) != ["%Y", "%d", "%m"] or "%" in "".join(p for p in parts if p not in directives):
        return None
    return re.compile("".join(_DIRECTIVES.get(p) or re.escape(p) for p in parts))


class _ReadFault(Exception):
    """The header of an export cannot be read (the message says why)."""


@dataclass
class _Stop:
    """Why the rows of an export stopped before its end, at which line ("": they did not)."""

    line: int = 0
    reason: str = ""


def _csv_fault(exc: Exception) -> str:
    """Why a CSV row cannot be read, in words and without its content."""
    if isinstance(exc, LimitExceeded):
        return f"refused: {exc}; the rest of the file is not read"
    if isinstance(exc, UnicodeDecodeError):
        return "bytes that are not UTF-8 (export the file as UTF-8); the rest of the file is not read"
    if "field larger than field limit" in str(exc):
        return (
            f"refused: a cell longer than {csv.field_size_limit()} characters (csv's cell limit); "
            "the rest of the file is not read"
        )
    return f"not readable CSV ({exc}); the rest of the file is not read"


def _xlsx_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the (row number, cells) of the first sheet, streamed (read-only mode keeps memory flat)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    values = enumerate(book.worksheets[0].iter_rows(values_only=True), start=1)
    header = ["" if v is None else str(v) for v in next(values, (0, ()))[1]]

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for number, cells in values:
                yield number, ["" if v is None else str(v) for v in cells]
        finally:
            book.close()

    return header, rows()


def _as_dicts(header: list[str], chunk: list[tuple[int, list[str]]]) -> list[tuple[int, dict[str, str]]]:
    """Rows as {column: cell}: a short row lacks the last columns, extra cells are ignored."""
    return [(line, dict(zip(header, cells, strict=False))) for line, cells in chunk]


def _chunks(rows: Iterator[tuple[int, list[str]]]) -> Iterator[list[tuple[int, list[str]]]]:
    chunk: list[tuple[int, list[str]]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _convert_chunk(
    adapter: TabularAdapter, work: tuple[str, list[str], list[tuple[int, list[str]]]]
) -> list[tuple[int, str | None, list[parallel.Packed]]]:
    """In a worker process: each row's key, and its records (or problems) packed to cross back."""
    path, header, chunk = work
    return [
        (line, key, parallel.pack(adapter.convert_row(row, f"{path}:{line}", key)))
        for line, row in _as_dicts(header, chunk)
        for key in (adapter._key(row),)
    ]


class _SeenRows:
    """Which job-seekers a file already had, in a temporary on-disk SQLite database
    (keyed by pseudonym, so no national number is written even to a temporary file)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a private temporary database on disk, deleted on close
        # One B-tree keyed by pseudonym (no rowid table beside it), with a fixed page cache:
        # memory stays bounded, and inserting random keys does not wait on the disk.
        self.db.execute("PRAGMA cache_size = -32768")
        self.db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def earlier_lines(self, keys: list[tuple[str, int]]) -> dict[int, int]:
        """For the (key, line) pairs of a chunk, in order: {line: the earlier line with the same key}
        for the repeated ones; every new key is remembered with its line."""
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", keys)
        if self.db.total_changes - before == len(keys):
            return {}  # no repeat: the common case costs one statement per chunk
        earlier = {}
        for key, line in keys:
            first = int(self.db.execute("SELECT line FROM seen WHERE key = ?", (key,)).fetchone()[0])
            if first != line:
                earlier[line] = first
        return earlier

    def close(self) -> None:
        self.db.close()
