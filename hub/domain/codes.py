"""Code lists the hub validates against: ISO 3166-1, ISO 639, ISO 4217, ISCO-08 format.

Country, language and currency codes come from pycountry (the Debian
iso-codes data), loaded on first use. The ISCO-08 check here is the code's
shape (four digits, major group 0-9); the list of the 436 unit groups arrives
with the code lists of the adapters.
"""

from __future__ import annotations

import re
from functools import cache

import pycountry

# Codes are written with the ASCII digits 0-9 only: ``\d`` would also take Arabic-Indic (٩٢١١) and
# fullwidth digits, a code space of their own that no search or match would ever meet.
ISCO08_UNIT = re.compile(r"[0-9]{4}")
ISCO08_PREFIX = re.compile(r"[0-9]{1,4}")
ESCO_PREFIX = "http://data.europa.eu/esco/"


@cache
def _countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


@cache
def _languages() -> frozenset[str]:
    out: set[str] = set()
    for lang in pycountry.languages:
        out.add(lang.alpha_3)
        if hasattr(lang, "alpha_2"):
            out.add(lang.alpha_2)
    return frozenset(out)


@cache
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def ascii_digits(text: str) -> bool:
    """True for a non-empty string of the ASCII digits 0-9 only. ``str.isdigit`` and ``int()`` also
    take the digits of other scripts ("٩", "９") and superscripts ("²")."""
    return text.isascii() and text.isdigit()


def is_country(code: object) -> bool:
    """ISO 3166-1 alpha-2, upper case."""
    return isinstance(code, str) and code in _countries()


def is_language(code: str) -> bool:
    """ISO 639-1 (two letters) or ISO 639-3, lower case."""
    return code in _languages()


def is_currency(code: str) -> bool:
    """ISO 4217 alphabetic code."""
    return code in _currencies()
