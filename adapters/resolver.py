"""Occupations as people write them: a ranking resolver that abstains instead of guessing.

Given a job title (and the language when known), ``Resolver.resolve`` ranks ESCO occupations
by how well one of their labels matches, and decides at the level the evidence supports:

- ``unit_group``: the best occupation is clear (score and margin over the thresholds below):
  its ISCO-08 unit group;
- ``ancestor``: the credible candidates disagree on the unit group but share a coarser
  ISCO-08 group (minor, sub-major or major): that group;
- ``ancestor`` too for a title of one word that is no label ("Infirmier"): the group holding
  three quarters of the labels it heads;
- ``abstained``: nothing credible, or credible candidates with nothing in common.

A wrong unit group is worse than a coarser right one (docs/occupations.md).

How a title is read, in this order: gender tags (``(h/f)``, ``H/F/X``, ``(m/w/d)``) go; paired
gendered forms (``Maçon / Maçonne``) are both read, the best match wins; case, accents and
punctuation fold; function words go (``de``, ``du``, ``of``…); common abbreviations expand;
French feminine endings become masculine (``-euse`` → ``-eur``, ``-rice`` → ``-eur``, ``-ère``
→ ``-er``) and every word is stemmed (Snowball, so plurals and the rest of gender fall
together); a word unknown to the index is replaced by the index word one edit away, found
through its character trigrams (one typo in a word of five letters or more).

The score of a label is the weighted Dice overlap of its words and the title's, each word
weighted by its inverse document frequency among the labels: 1.0 for a label with exactly
the title's words, whatever their order. An occupation's score is that of its best label.
Everything is in memory, built from the shipped code lists in a few seconds; a title takes
about a millisecond (bench/resolver.py).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import snowballstemmer

from adapters.codelists import TRUSTED_RELATIONS, CodeLists

LANGUAGES = ("fr", "en")

# Calibrated on bench/data/resolver_eval.tsv (bench/resolver.py; docs/occupations.md says how).
# A unit group needs the best occupation's score to reach UNIT_SCORE and to lead every occupation
# of another unit group by UNIT_MARGIN, per language: the highest unit-group coverage that keeps
# wrong unit groups under 2% of all titles. English labels are more often loose synonyms of one
# another, so English asks a larger lead. A title of unknown language takes the stricter of each.
UNIT_THRESHOLDS = {"fr": (0.75, 0.12), "en": (0.70, 0.16)}
UNIT_SCORE = max(score for score, _ in UNIT_THRESHOLDS.values())
UNIT_MARGIN = max(margin for _, margin in UNIT_THRESHOLDS.values())
CREDIBLE_GAP = 0.12  # candidates within this of the best count for the common ancestor
ANCESTOR_SCORE = 0.5  # below this nothing is credible: abstain
TOP = 10
SUPPORT = 60  # labels read per title and language, for the vote of the credible ones
SHARE = 0.9  # an ancestor must hold this share of the credible labels
HEAD_SUPPORT = 4  # the head word alone decides only with this many credible labels behind it
WORD_SHARE = 0.75  # a one-word title: the group holding this share of the labels it heads
ALT_WEIGHT = 0.9  # an alternative label (or a ROME title) is weaker evidence than a preferred one

GENDER_TAG = re.compile(
    r"\(\s*[hfmwdx]\s*(?:[/,-]\s*[hfmwdx]\s*){1,2}\)|\b[hfm]\s*/\s*[hfmwx](?:\s*/\s*[hfmwdx])?\b",
    re.IGNORECASE,
)
STOPWORDS = {
    "fr": frozenset(
        [
            "de",
            "du",
            "des",
            "la",
            "le",
            "les",
            "l",
            "d",
            "un",
            "une",
            "en",
            "et",
            "a",
            "au",
            "aux",
            "pour",
            "par",
            "sur",
            "sous",
            "dans",
            "avec",
            "chez",
            "ou",
        ]
    ),
    "en": frozenset(["of", "the", "and", "a", "an", "in", "on", "for", "to", "at", "by", "with", "or"]),
}
ABBREVIATIONS = {
    "fr": {
        "pl": "poids lourd",
        "spl": "super poids lourd",
        "vl": "vehicule leger",
        "btp": "batiment travaux publics",
        "resp": "responsable",
        "tech": "technicien",
        "techn": "technicien",
        "agt": "agent",
        "asst": "assistant",
        "dev": "developpeur",
        "ing": "ingenieur",
        "ouv": "ouvrier",
        "comm": "commercial",
    },
    "en": {
        "mgr": "manager",
        "asst": "assistant",
        "eng": "engineer",
        "engr": "engineer",
        "tech": "technician",
        "dev": "developer",
        "admin": "administrator",
        "hgv": "heavy goods vehicle",
    },
}
_FEMININE = (
    (re.compile(r"euses?$"), "eur"),
    (re.compile(r"rices?$"), "eur"),
    (re.compile(r"(i?)[eè]res?$"), r"\1er"),
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Analyzer:
    """Turns a title of one language into the set of words the index compares."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.stemmer = snowballstemmer.stemmer("french" if lang == "fr" else "english")
        self.stop = STOPWORDS[lang]
        self.abbreviations = ABBREVIATIONS[lang]

    @functools.lru_cache(maxsize=200_000)  # noqa: B019 - one analyzer per language, for the process
    def word(self, raw: str) -> str:
        w = raw
        if self.lang == "fr":
            for pattern, repl in _FEMININE:
                if len(w) > 5 and pattern.search(w):
                    w = pattern.sub(repl, w)
                    break
        return _fold(self.stemmer.stemWord(w))

    def words(self, text: str) -> list[tuple[str, str]]:
        """(folded word, term) of each word of the title that counts, abbreviations expanded."""
        out: list[tuple[str, str]] = []
        for raw in _WORD.findall(text.casefold().replace("’", "'").replace("œ", "oe")):
            folded = _fold(raw)
            if folded in self.stop or (len(folded) == 1 and not folded.isdigit()):
                continue
            expansion = self.abbreviations.get(folded)
            for w in expansion.split() if expansion else (raw,):
                term = self.word(w)
                if term and _fold(w) not in self.stop and all(term != t for _, t in out):
                    out.append((_fold(w), term))
        return out

    def terms(self, text: str) -> tuple[str, ...]:
        return tuple(t for _, t in self.words(text))


def variants(title: str) -> list[str]:
    """The ways a title may be meant: without gender tags, and each side of a gendered pair."""
    text = GENDER_TAG.sub(" ", title)
    text = re.sub(r"\s+[-–]\s+[hf]\s*$", " ", text, flags=re.IGNORECASE)
    parts = [p for p in re.split(r"\s*/\s*", text) if p.strip()]
    out = [" ".join(text.replace("/", " ").split())]
    if len(parts) > 1:
        out += parts
    return [o for o in dict.fromkeys(out) if o]


@dataclass(frozen=True)
class Candidate:
    uri: str
    isco08: str
    score: float
    label: str
    exact: bool = False  # the label has exactly the title's words
    preferred: bool = False  # the label is the occupation's preferred label


@dataclass(frozen=True)
class Answer:
    """A resolver's answer: the ISCO-08 code at the level decided (1 to 4 digits, "" when it
    abstained), the decision, the score of the best candidate, and the ranked candidates."""

    isco08: str
    decision: str  # unit_group | ancestor | abstained
    score: float
    candidates: tuple[Candidate, ...]

    @property
    def esco_uri(self) -> str:
        return self.candidates[0].uri if self.decision == "unit_group" else ""

    @property
    def level(self) -> str:
        return {4: "unit", 3: "minor", 2: "sub-major", 1: "major"}.get(len(self.isco08), "")


class _Index:
    """Labels of one language: an inverted index of their words, with idf weights."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self.labels: list[tuple[str, str, tuple[str, ...]]] = []  # (uri, label, terms)
        self.trust: list[float] = []  # 1 for a preferred label, ALT_WEIGHT for the others
        self.postings: dict[str, list[int]] = defaultdict(list)
        self.idf: dict[str, float] = {}
        self.weight: list[float] = []
        self.grams: dict[str, set[str]] = defaultdict(set)
        # every folded word of five letters or more seen in a label → its term (for typos)
        self.vocabulary: dict[str, str] = {}

    def add(self, uri: str, label: str, preferred: bool) -> None:
        terms = self.analyzer.terms(label)
        for word, term in self.analyzer.words(label):
            if len(word) >= 5:
                self.vocabulary.setdefault(word, term)
        if terms:
            self.labels.append((uri, label, terms))
            self.trust.append(1.0 if preferred else ALT_WEIGHT)

    def freeze(self) -> None:
        best: dict[tuple[str, tuple[str, ...]], int] = {}
        for i, (uri, _label, terms) in enumerate(self.labels):
            key = (uri, tuple(sorted(terms)))  # "maçon" and "maçonne" are one label once stemmed
            if key not in best or self.trust[i] > self.trust[best[key]]:
                best[key] = i
        keep = sorted(best.values())
        self.labels = [self.labels[i] for i in keep]
        self.trust = [self.trust[i] for i in keep]
        df: dict[str, int] = defaultdict(int)
        for i, (_, _, terms) in enumerate(self.labels):
            for term in terms:
                self.postings[term].append(i)
                df[term] += 1
        n = len(self.labels)
        self.idf = {t: math.log(1 + n / d) for t, d in df.items()}
        self.rare = math.log(1 + n)
        self.weight = [sum(self.idf[t] for t in terms) for _, _, terms in self.labels]
        for word in self.vocabulary:
            for g in _trigrams(word):
                self.grams[g].add(word)

    def correct(self, word: str, term: str) -> str | None:
        """The term of ``word``, or of the index word one edit away from it when it is unknown
        and has five letters or more."""
        if term in self.idf or len(word) < 5:
            return term if term in self.idf else None
        counts: dict[str, int] = defaultdict(int)
        for g in _trigrams(word):
            for other in self.grams.get(g, ()):
                counts[other] += 1
        best = sorted(
            (c for c in counts if abs(len(c) - len(word)) <= 1 and _one_edit(word, c)),
            key=lambda c: (-counts[c], c),
        )
        return self.vocabulary[best[0]] if best else None

    def search(
        self, text: str, top: int, keep: Callable[[str], bool], fix_typos: bool
    ) -> list[tuple[float, int, bool]]:
        words = self.analyzer.words(text)
        found = ((self.correct(w, t) if fix_typos else t) for w, t in words)
        terms = {t for t in found if t is not None and t in self.idf}
        if not terms:
            return []
        # A word the index does not know still weighs in the title, as a rare word would.
        unknown = len(words) - len(terms)
        query_weight = sum(self.idf[t] for t in terms) + unknown * self.rare
        overlap: dict[int, float] = defaultdict(float)
        for term in terms:
            w = self.idf[term]
            for i in self.postings[term]:
                overlap[i] += w
        hits = [
            (
                self.trust[i] * 2 * shared / (query_weight + self.weight[i]),
                i,
                shared >= query_weight >= self.weight[i] - 1e-9,
            )
            for i, shared in overlap.items()
            if keep(self.labels[i][0])
        ]
        return sorted(hits, key=lambda si: (-si[0], si[1]))[:top]


def _trigrams(word: str) -> set[str]:
    padded = f"^{word}$"
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of exactly one (substitution, insertion, deletion or swap of two)."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def common_group(codes: Iterable[str]) -> str:
    """The lowest ISCO-08 group the codes share: their longest common prefix ("" for none)."""
    codes = list(codes)
    if not codes:
        return ""
    prefix = codes[0]
    for code in codes[1:]:
        while not code.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


class Resolver:
    """Ranks ESCO occupations for a job title and decides at the level the evidence supports."""

    def __init__(self, lists: CodeLists, exclude: Callable[[str, str, str], bool] | None = None) -> None:
        """Index every label of the code lists (``exclude(uri, language, label)`` leaves some out:
        the evaluation holds labels out this way)."""
        self.lists = lists
        self.indexes = {lang: _Index(Analyzer(lang)) for lang in LANGUAGES}
        for uri, by_lang in lists.occupation_labels.items():
            if not lists.is_unit(lists.esco.get(uri, "")):
                continue
            for lang, labels in by_lang.items():
                preferred = set(_preferred(lists, uri, lang))
                for label in labels:
                    if lang not in self.indexes:
                        continue
                    if label in preferred or exclude is None or not exclude(uri, lang, label):
                        self.indexes[lang].add(uri, label, label in preferred)
        # ROME job titles whose ESCO occupation the official mapping calls an exact or close match,
        # or a broader one (a narrower job lies within the broader occupation's unit group).
        for title, rows in lists.rome_appellations.items():
            for _rome, isco, relation, uri in rows:
                if relation in (*TRUSTED_RELATIONS, "broadMatch") and lists.esco.get(uri) == isco:
                    self.indexes["fr"].add(uri, title, False)
        for index in self.indexes.values():
            index.freeze()

    def rank(
        self, title: str, lang: str = "", within: frozenset[str] | None = None, top: int = TOP
    ) -> list[Candidate]:
        """ESCO occupations for ``title``, best first. ``within``: only these ISCO-08 unit groups."""
        langs = [lang] if lang in self.indexes else list(self.indexes)

        def keep(uri: str) -> bool:
            return within is None or self.lists.esco.get(uri, "") in within

        def ranked(fix_typos: bool) -> list[Candidate]:
            hits: dict[tuple[str, str], Candidate] = {}
            for text in variants(title):
                for lg in langs:
                    index = self.indexes[lg]
                    for score, i, exact in index.search(text, SUPPORT, keep, fix_typos):
                        uri, label, _ = index.labels[i]
                        key = (uri, label)
                        if score > (hits[key].score if key in hits else 0.0):
                            preferred = index.trust[i] == 1.0
                            hits[key] = Candidate(
                                uri, self.lists.esco[uri], round(score, 4), label, exact, preferred
                            )
            return sorted(hits.values(), key=lambda c: (-c.score, c.uri, c.label))

        # A word is taken for a typo only when the title as written finds nothing clear: "macon"
        # is a French word, not a misspelt English "mason".
        found = ranked(False)
        if not found or found[0].score < UNIT_THRESHOLDS.get(lang, (UNIT_SCORE, 0))[0]:
            corrected = ranked(True)
            if corrected and (not found or corrected[0].score > found[0].score):
                found = corrected
        return found

    def resolve(self, title: str, lang: str = "", within: frozenset[str] | None = None) -> Answer:
        """The decision for ``title`` (see the module docstring).

        When the whole title decides nothing, its head word alone is tried (the first word in
        French, "cueilleur de fraises"; the last in English, "strawberry picker"): what it decides
        is given as an ancestor of minor group at most, since the rest was not understood."""
        answer = decide(self.rank(title, lang, within), lang)
        if answer.decision != "abstained":
            return answer
        headed = self._headed_by(title, lang, within)
        if headed:
            return Answer(headed, "ancestor", answer.score, answer.candidates)
        for head, lg in self._heads(title, lang):
            labels = self.rank(head, lg, within)
            # The head word alone must be the word of several labels that agree ("cueilleur de
            # fruits", "de cerises", "de pommes"…), not of one label by chance ("bâtisseur de rêves").
            if len({c.label for c in labels if labels[0].score - c.score <= CREDIBLE_GAP}) < HEAD_SUPPORT:
                continue
            coarse = decide(labels, lg)
            if coarse.decision != "abstained":
                return Answer(
                    coarse.isco08[:3], "ancestor", coarse.score, answer.candidates or coarse.candidates
                )
        return answer

    def _headed_by(self, title: str, lang: str, within: frozenset[str] | None) -> str:
        """A title of one word that is no label ("infirmier", "chauffeur") names the family of
        occupations whose labels it heads ("infirmier anesthésiste", "infirmier scolaire"…): the
        lowest ISCO-08 group, minor at most, holding WORD_SHARE of those labels, when at least
        HEAD_SUPPORT of them exist. "" when the title has more words or the family is mixed."""
        for lg in [lang] if lang in self.indexes else list(self.indexes):
            index = self.indexes[lg]
            words = {t for text in variants(title) for t in index.analyzer.terms(text)}
            if len(words) != 1:
                continue
            (term,) = words
            position = 0 if lg == "fr" else -1
            codes = [
                code
                for i in index.postings.get(term, ())
                if index.labels[i][2][position] == term
                and (code := self.lists.esco.get(index.labels[i][0], ""))
                and (within is None or code in within)
            ]
            if len(codes) < HEAD_SUPPORT:
                continue
            for length in (3, 2, 1):
                counts: dict[str, int] = defaultdict(int)
                for code in codes:
                    counts[code[:length]] += 1
                prefix, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
                if n >= WORD_SHARE * len(codes):
                    return prefix
        return ""

    def _heads(self, title: str, lang: str) -> list[tuple[str, str]]:
        out = []
        for lg in [lang] if lang in self.indexes else list(self.indexes):
            analyzer = self.indexes[lg].analyzer
            for text in variants(title):
                words = analyzer.words(text)
                if len(words) >= 2:
                    head = words[0][0] if lg == "fr" else words[-1][0]
                    out.append((head, lg))
        return list(dict.fromkeys(out))


def best_per_occupation(labels: list[Candidate], top: int = TOP) -> tuple[Candidate, ...]:
    best: dict[str, Candidate] = {}
    for c in labels:  # best first already
        best.setdefault(c.uri, c)
    return tuple(sorted(best.values(), key=lambda c: (-c.score, c.uri))[:top])


def decide(labels: list[Candidate], lang: str = "") -> Answer:
    """unit_group, ancestor or abstained, from the matching labels, best first (thresholds above).

    A unit group needs a clear best occupation. Otherwise the credible labels (within
    CREDIBLE_GAP of the best) vote: the answer is the lowest ISCO-08 group, minor at most, that
    holds at least SHARE of them ("infirmier" matches many specialised nurses' titles, most of
    them nursing professionals); with no such group, the resolver abstains."""
    ranked = best_per_occupation(labels)
    if not ranked or ranked[0].score < ANCESTOR_SCORE:
        return Answer("", "abstained", ranked[0].score if ranked else 0.0, ranked)
    top = ranked[0]
    rival = next((c.score for c in ranked if c.isco08 != top.isco08), 0.0)
    unit_score, unit_margin = UNIT_THRESHOLDS.get(lang, (UNIT_SCORE, UNIT_MARGIN))
    if top.score >= unit_score and top.score - rival >= unit_margin:
        return Answer(top.isco08, "unit_group", top.score, ranked)
    # A title that is word for word a label of one unit group only is clear too; so is one that is
    # word for word the preferred label (ESCO's own name) of one unit group's occupation, when
    # other unit groups have it only as an alternative label ("aide-soignant").
    for exact in (
        {c.isco08 for c in labels if c.exact},
        {c.isco08 for c in labels if c.exact and c.preferred},
    ):
        if len(exact) == 1:
            (unit,) = exact
            return Answer(unit, "unit_group", top.score, ranked)
    credible = [c.isco08 for c in labels if c.score >= top.score - CREDIBLE_GAP]
    group = ""
    for length in (3, 2, 1):  # evidence too weak for a unit group gives its minor group at most
        counts: dict[str, int] = defaultdict(int)
        for code in credible:
            counts[code[:length]] += 1
        prefix, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n >= SHARE * len(credible):
            group = prefix
            break
    if group:
        return Answer(group, "ancestor", top.score, ranked)
    return Answer("", "abstained", top.score, ranked)


def _preferred(lists: CodeLists, uri: str, lang: str) -> list[str]:
    """The preferred label of an occupation in a language, each gendered form."""
    return lists.occupation_preferred.get(uri, {}).get(lang, [])
