"""Languages as national systems write them: "français:B2", "arabe:C2", "anglais courant",
"pt:língua materna".

A language is an ISO 639 code ("fr", or a 639-3 code for a language with no two-letter one,
"fon", "snk"), or its name in French, English, Portuguese, Arabic or any language CLDR knows
("français", "English", "português", "العربية"): names are read with ``langcodes`` over the
Unicode CLDR data that ``language_data`` ships, so no hand-kept list goes stale. A level is a
CEFR level ("B2") or a word of LEVEL_WORDS ("courant", "notions", "langue maternelle"). A
mapping file adds or overrides both ([values.language], [values.cefr]); docs/onboarding.md
lists the words.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import langcodes
import pycountry

from adapters.codelists import normalise
from adapters.people import CEFR

# Level words and the CEFR level each stands for: when a word is vague, the lower level, since a
# level overstated misleads an employer more than one understated ("notions" is A1, not A2).
LEVEL_WORDS: dict[str, tuple[str, ...]] = {
    "NATIVE": (
        "langue maternelle",
        "maternelle",
        "natif",
        "native",
        "mother tongue",
        "native speaker",
        "first language",
        "lingua materna",
        "língua materna",
        "nativo",
        "nativa",
        "لغة أم",
        "اللغة الأم",
    ),
    "C2": ("bilingue", "bilingual", "bilíngue", "maîtrise parfaite", "proficient"),
    "C1": (
        "courant",
        "couramment",
        "parle couramment",
        "fluent",
        "fluente",
        "fluência",
        "avancé",
        "advanced",
        "avançado",
        "متقدم",
        "بطلاقة",
    ),
    "B2": ("bon niveau", "bon", "good", "bom", "upper intermediate", "جيد"),
    "B1": ("intermédiaire", "moyen", "intermediate", "intermédio", "intermediário", "متوسط"),
    "A2": ("élémentaire", "elementary", "basic", "básico", "elementar", "scolaire", "pré-intermédiaire"),
    "A1": ("notions", "débutant", "beginner", "iniciante", "principiante", "مبتدئ"),
}
_LEVELS = {normalise(word): level for level, words in LEVEL_WORDS.items() for word in words}


@functools.cache
def _iso639() -> frozenset[str]:
    """The codes the hub accepts: ISO 639-1, and ISO 639-3 for the languages without one."""
    return frozenset(
        code for lang in pycountry.languages for code in (getattr(lang, "alpha_2", ""), lang.alpha_3) if code
    )


@functools.lru_cache(maxsize=4096)
def language_code(name: str) -> str | None:
    """The ISO 639 code of a language code or name in any language CLDR knows; None if unknown."""
    text = name.strip()
    if not text:
        return None
    lowered = text.lower()
    if lowered in _iso639() and len(lowered) <= 3:
        # ISO 639-1 where the language has one ("ara" is "ar"), as the hub's records write it.
        tag = langcodes.Language.get(lowered).language
        return tag if tag in _iso639() else lowered
    try:
        tag = langcodes.find(text).language
    except LookupError:
        return None
    return tag if tag and tag in _iso639() else None


@dataclass(frozen=True)
class LanguageEntry:
    """One language of a list, read: its code and CEFR level name, or what could not be read."""

    text: str
    code: str | None
    level: str | None

    @property
    def problem(self) -> str:
        if self.code is None:
            return "not a language code nor a language name known to CLDR or [values.language]"
        if self.level is None:
            return "no CEFR level nor a level word known ([values.cefr], docs/onboarding.md)"
        return ""


class LanguageReader:
    """Reads language entries with the shipped tables and a mapping's own ([values.language]:
    name → code, [values.cefr]: word → level, both normalised keys)."""

    def __init__(self, names: dict[str, str] | None = None, levels: dict[str, str] | None = None) -> None:
        self.names = names or {}
        self.levels = {**_LEVELS, **(levels or {})}

    def code(self, name: str) -> str | None:
        return self.names.get(normalise(name)) or language_code(name)

    def level(self, word: str) -> str | None:
        key = normalise(word)
        if key in self.levels:
            return self.levels[key]
        upper = word.strip().upper().replace(" ", "")
        return upper if upper in CEFR else None

    def entry(self, text: str) -> LanguageEntry:
        """ "fr:B2", "français : courant", "anglais courant", "arabe" (no level: level None)."""
        text = text.strip()
        if ":" in text:
            name, _, level = text.partition(":")
            return LanguageEntry(text, self.code(name), self.level(level))
        words = text.split()
        for cut in range(1, len(words)):  # the longest level words at the end: "anglais bon niveau"
            found = self.level(" ".join(words[cut:]))
            if found is not None:
                return LanguageEntry(text, self.code(" ".join(words[:cut])), found)
        return LanguageEntry(text, self.code(text), None)


def add_language(languages: Any, written: str, levels: list[int | None], problems: Any, where: str) -> None:
    """Add a language (a code or a name) at the lowest of the CEFR levels given for its
    dimensions to a repeated LanguageSkill field; an unreadable one is dropped with a warning
    naming the field (an optional field never refuses the record)."""
    code = language_code(written) if written else None
    given = [level for level in levels if level is not None]
    if code is None:
        problems.warn(where, "not an ISO 639 code nor a language name known to CLDR: dropped")
    elif not given:
        problems.warn(where, "no CEFR level A1 to C2 in any dimension: dropped")
    elif any(lang.language_code == code for lang in languages):
        problems.warn(where, "the same language twice: the first is kept")
    else:
        if len(given) < len(levels):
            problems.warn(
                where, f"CEFR levels for {len(given)} of {len(levels)} dimensions: the lowest given is kept"
            )
        languages.add(language_code=code, level=min(given))
