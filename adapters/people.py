"""What the adapters of job-seeker records share.

A candidate becomes two records, the professional profile and the personal
details, keyed by a pseudonym: HMAC-SHA256 of the SPE's own identifier of the
person (dossier number, document id) under the SPE's subject key, so that
identifier never leaves the SPE and the same person keeps the same records.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
from datetime import UTC, date, datetime
from typing import Any

import phonenumbers
import pycountry
from spehub.v1 import common_pb2, profile_pb2

from adapters.base import AdapterError

CEFR = {"A1": 1, "A2": 2, "B1": 3, "B2": 4, "C1": 5, "C2": 6, "NATIVE": 7}
CEFR_NAMES = {v: k for k, v in CEFR.items()}
MOBILITY = {"PERMANENT": 1, "TEMPORARY": 2, "SEASONAL": 3, "CIRCULAR": 4}
MOBILITY_NAMES = {v: k for k, v in MOBILITY.items()}
# What HR Open and HR-XML call the kinds of position a candidate seeks, as mobility types.
MOBILITY_BY_OFFERING = {
    "DirectHire": common_pb2.MOBILITY_TYPE_PERMANENT,
    "Temporary": common_pb2.MOBILITY_TYPE_TEMPORARY,
    "Seasonal": common_pb2.MOBILITY_TYPE_SEASONAL,
    "Circular": common_pb2.MOBILITY_TYPE_CIRCULAR,
}
OFFERING_BY_MOBILITY = {v: k for k, v in MOBILITY_BY_OFFERING.items()}
MIN_SUBJECT_KEY = 32
# Dates and codes in ASCII digits only: ``\d`` takes Arabic-Indic and fullwidth digits too, and the
# hub's schema carries none (docs/adapters.md, "Digits").
PARTIAL_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
DAY_FIRST = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})")
NACE = re.compile(r"[A-U]([0-9]{2}(\.[0-9]{1,2})?)?")  # NACE Rev. 2: a section, division, group or class
# Country codes some European formats write their own way.
COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}


class Pseudonyms:
    """Keys people by HMAC of the SPE's identifier under its subject key."""

    def __init__(self, subject_key: bytes) -> None:
        if len(subject_key) < MIN_SUBJECT_KEY:
            raise AdapterError(
                f"the subject key must be {MIN_SUBJECT_KEY} bytes or more: it keys the SPE's identifiers "
                "(--subject-key-file: a base64 key, kept secret and never changed)"
            )
        self.key = subject_key

    def __call__(self, identifier: str) -> str:
        return hmac.digest(self.key, identifier.strip().encode(), hashlib.sha256).hex()[:24]


def candidate_pair(
    origin: str, key: str, version: int = 1
) -> tuple[profile_pb2.CandidateProfile, profile_pb2.PersonalDetails]:
    """The two empty records of a candidate, with their headers and cross references set."""
    profile = profile_pb2.CandidateProfile()
    profile.header.record_id, profile.header.origin_participant_id = f"P-{key}", origin
    profile.header.version = version
    profile.consent_record_id = f"C-{key}"
    personal = profile_pb2.PersonalDetails()
    personal.header.record_id, personal.header.origin_participant_id = f"D-{key}", origin
    personal.header.version = version
    personal.profile_record_id = profile.header.record_id
    personal.consent_record_id = profile.consent_record_id
    return profile, personal


def e164(raw: str, region: str) -> str | None:
    """A phone number in E.164 form, read with ``region``'s numbering plan; None if it is not valid.

    libphonenumber decides validity. Its parser is the slow half of the work, so a number written
    the plain national way (ASCII digits and spaces, dots or dashes, nothing the parser would strip
    or reinterpret) is built directly; tests/test_adapters_fast.py checks that this gives what
    ``phonenumbers.parse`` gives."""
    number = _plain_national(raw, region) if region else None
    if number is None:
        try:
            number = phonenumbers.parse(raw, region or None)
        except phonenumbers.NumberParseException:
            return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_SEPARATORS = str.maketrans("", "", " .-")


@functools.lru_cache(maxsize=512)
def _plan(region: str) -> tuple[int, str, re.Pattern[str] | None, re.Pattern[str] | None] | None:
    """The country code, its digits, the international-call prefix and the national prefix of a region."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None or meta.country_code is None:
        return None
    idd = re.compile(meta.international_prefix) if meta.international_prefix else None
    national = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
    return meta.country_code, str(meta.country_code), idd, national


def _plain_national(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The number of a plainly written national number ("77 123 45 67" in SN), as
    ``phonenumbers.parse`` reads it; None for anything else (the parser then reads it)."""
    plan = _plan(region)
    digits = raw.translate(_SEPARATORS)
    if plan is None or not (3 <= len(digits) <= 17 and digits.isascii() and digits.isdigit()):
        return None
    country_code, country_digits, idd, national = plan
    if (
        digits[0] == "0"  # leading zeros, trunk and international prefixes: the parser's rules
        or digits.startswith(country_digits)  # maybe the country code written without "+"
        or (idd is not None and idd.match(digits))
        or (national is not None and national.match(digits))
    ):
        return None
    return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(digits))


def cefr(text: str) -> int | None:
    """The CefrLevel value of "A1" … "C2" (any case, spaces ignored); None for anything else."""
    return CEFR.get(text.strip().upper().replace(" ", ""))


def period_date(text: str, end: bool = False) -> common_pb2.Date | None:
    """A period bound written YYYY, YYYY-MM or YYYY-MM-DD as a whole date (the hub takes no partial
    dates): a start falls on the first day of its month or year, an end on the last. None if not a date."""
    found = PARTIAL_DATE.fullmatch(text.strip()[:10])
    if not found:
        return None
    year, month, day = (int(g) if g else 0 for g in found.groups())
    try:
        if not month:
            month, day = (12, 31) if end else (1, 1)
        elif not day:
            day = calendar.monthrange(year, month)[1] if end else 1
        date(year, month, day)
    except ValueError:
        return None
    return common_pb2.Date(year=year, month=month, day=day)


def full_date(text: str) -> common_pb2.Date | None:
    """A date written YYYY-MM-DD (a date-time is cut to its date); None for anything else."""
    found = PARTIAL_DATE.fullmatch(text.strip()[:10])
    if not found or not found.group(3):
        return None
    return period_date(text)


def dotted_date(text: str) -> common_pb2.Date | None:
    """A date written DD.MM.YYYY (as Norwegian and German systems write them) or YYYY-MM-DD;
    None for anything else ("na", "Snarest")."""
    found = DAY_FIRST.fullmatch(text.strip())
    if found:
        return full_date(f"{found[3]}-{int(found[2]):02d}-{int(found[1]):02d}")
    return full_date(text) if text else None


def date_text(d: common_pb2.Date) -> str:
    """The YYYY-MM-DD form of a Date."""
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def country(code: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper case, with the European aliases (UK, EL) resolved."""
    upper = code.strip().upper()
    return COUNTRY_ALIASES.get(upper, upper)


def birth(personal: profile_pb2.PersonalDetails, text: str, problems: Any, where: str) -> None:
    """A birth date; only its year when only the year (or year and month) is given; else dropped."""
    whole = full_date(text)
    if whole is not None:
        personal.birth_date.CopyFrom(whole)
        return
    found = PARTIAL_DATE.fullmatch(text.strip())
    if found and 1900 <= int(found.group(1)) <= datetime.now(UTC).year:
        personal.birth_year = int(found.group(1))
        problems.warn(where, "not a whole date: only the year of birth is kept")
    else:
        problems.warn(where, "not a date written YYYY-MM-DD: dropped")


def nationality(personal: profile_pb2.PersonalDetails, code: str, problems: Any, where: str) -> None:
    value = country(code)
    if len(value) != 2 or pycountry.countries.get(alpha_2=value) is None:
        problems.warn(where, "not an ISO 3166-1 alpha-2 code: dropped")
    elif value not in personal.nationality_country_codes:
        personal.nationality_country_codes.append(value)
