"""The occupation resolver: how good and how fast, on the project's own evaluation set.

Run: .venv/bin/python bench/resolver.py [--make-eval] [--limit N]

The evaluation set (bench/data/resolver_eval.tsv.gz) is built by rule from the shipped code
lists, never taken from a leaderboard: 20% of ESCO's French and English alternative labels,
chosen by a fixed hash, are held out of the index, and each held-out label is asked as
written and in variants derived from it (one gendered form, accents removed, plural, a
gender tag, one typo, another word order). ``--make-eval`` writes the file again.

Reported per language: coverage (unit group, ancestor, abstained), the ISCO-08 accuracy of
unit-group answers, the wrong-unit-group rate over all titles, the share of ancestors that
are a true ancestor, the MRR over ESCO occupations, how often the best-ranked occupation is of
the right unit group (the ceiling of unit-group coverage at no wrong answer), the time per title (p50, one core), the
time to build the index and the resident memory of the lists and the index.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import re
import resource
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.codelists import CodeLists
from adapters.resolver import LANGUAGES, Analyzer, Resolver, best_per_occupation

EVAL = Path(__file__).resolve().parent / "data" / "resolver_eval.tsv.gz"
FIELDS = ("lang", "variant", "title", "uri", "isco08", "ambiguous")


def held_out(uri: str, lang: str, label: str) -> bool:
    """The fixed 20% of alternative labels kept out of the index for the evaluation."""
    return hashlib.sha256(f"{uri}\0{lang}\0{label}".encode()).digest()[0] % 5 == 0


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _typo(text: str) -> str | None:
    """Two neighbouring letters of the longest word (of six letters or more) swapped."""
    words = text.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[longest]
    if len(w) < 6 or not w.isalpha():
        return None
    i = len(w) // 2
    if w[i] == w[i + 1]:
        return None
    words[longest] = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    return " ".join(words)


def _plural(text: str, lang: str) -> str:
    words = text.split()
    i = 0 if lang == "fr" else len(words) - 1
    if not words[i].endswith(("s", "x")):
        words[i] += "s"
    return " ".join(words)


def _reordered(text: str, lang: str) -> str | None:
    stop = {
        "fr": {"de", "du", "des", "la", "le", "les", "d'", "l'", "en", "et", "à", "au", "aux"},
        "en": {"of", "the", "and", "in", "for"},
    }[lang]
    words = [w for w in re.split(r"\s+", text) if w.lower() not in stop]
    if len(words) < 2:
        return None
    return " ".join(words[1:] + words[:1])


def _feminine(text: str, lang: str) -> str | None:
    if lang != "fr":
        return None
    first, _, rest = text.partition(" ")
    for masc, fem in (("eur", "euse"), ("ier", "ière"), ("ien", "ienne"), ("er", "ère"), ("teur", "trice")):
        if first.endswith(masc):
            return " ".join(filter(None, [first[: -len(masc)] + fem, rest]))
    return None


def make_eval(lists: CodeLists) -> list[dict[str, str]]:
    # A label ESCO gives to occupations of different unit groups has no one right answer; nor has
    # one that differs from a label of another unit group only in what the resolver folds by
    # design (case, accents, gender, plural, function words, word order): ESCO files
    # "prothésiste-orthopédiste" under 3214 and "prothesiste-orthopediste" under 1420.
    analyzers = {lang: Analyzer(lang) for lang in LANGUAGES}
    groups_of: dict[tuple[str, frozenset[str]], set[str]] = defaultdict(set)
    for uri, by_lang in lists.occupation_labels.items():
        for lang, labels in by_lang.items():
            if lang not in analyzers:
                continue
            for label in labels:
                groups_of[(lang, frozenset(analyzers[lang].terms(label)))].add(lists.esco.get(uri, ""))
    rows = []
    for uri, by_lang in sorted(lists.occupation_labels.items()):
        isco = lists.esco.get(uri, "")
        if not lists.is_unit(isco):
            continue
        for lang in ("fr", "en"):
            preferred = set(lists.occupation_preferred.get(uri, {}).get(lang, []))
            for label in by_lang.get(lang, []):
                if label in preferred or not held_out(uri, lang, label):
                    continue
                variants = {
                    "as written": label,
                    "gendered": _feminine(label, lang),
                    "no accents": _strip_accents(label),
                    "plural": _plural(label, lang),
                    "gender tag": f"{label} (H/F)" if lang == "fr" else f"{label} (m/f)",
                    "typo": _typo(label),
                    "word order": _reordered(label, lang),
                }
                seen = set()
                for variant, title in variants.items():
                    if title and title not in seen:
                        seen.add(title)
                        ambiguous = len(groups_of[(lang, frozenset(analyzers[lang].terms(label)))]) > 1
                        rows.append(
                            {
                                "lang": lang,
                                "variant": variant,
                                "title": title,
                                "uri": uri,
                                "isco08": isco,
                                "ambiguous": "1" if ambiguous else "",
                            }
                        )
    return rows


def evaluate(resolver: Resolver, rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    rr: dict[str, list[float]] = defaultdict(list)
    times: list[float] = []
    for row in rows:
        lang = row["lang"] + (
            " (labels of one unit group)"
            if not row["ambiguous"]
            else " (labels ESCO gives to several unit groups)"
        )
        started = time.perf_counter()
        answer = resolver.resolve(row["title"], row["lang"])
        times.append(time.perf_counter() - started)
        labels = resolver.rank(row["title"], row["lang"])
        t = tally[lang]
        t["titles"] += 1
        t[answer.decision] += 1
        if answer.decision == "unit_group":
            t["unit right" if answer.isco08 == row["isco08"] else "unit wrong"] += 1
        elif answer.decision == "ancestor":
            t["ancestor right" if row["isco08"].startswith(answer.isco08) else "ancestor wrong"] += 1
        occupations = best_per_occupation(labels, 100)
        t["best right"] += bool(occupations) and occupations[0].isco08 == row["isco08"]
        ranked = [c.uri for c in occupations]
        rr[lang].append(1 / (ranked.index(row["uri"]) + 1) if row["uri"] in ranked else 0.0)
    out: dict[str, dict[str, float]] = {}
    for lang, t in sorted(tally.items()):
        n = t["titles"]
        out[lang] = {
            "titles": n,
            "unit_group": t["unit_group"] / n,
            "ancestor": t["ancestor"] / n,
            "abstained": t["abstained"] / n,
            "unit accuracy": t["unit right"] / max(1, t["unit_group"]),
            "wrong unit / all": t["unit wrong"] / n,
            "ancestor right": t["ancestor right"] / max(1, t["ancestor"]),
            "MRR": statistics.fmean(rr[lang]),
            # the unit group of the best-ranked occupation is right: what a resolver that never
            # abstained would score, and so the ceiling of unit-group coverage at no wrong answer
            "best is right": t["best right"] / n,
        }
    out["time"] = {
        "p50 ms": statistics.median(times) * 1000,
        "p95 ms": sorted(times)[int(len(times) * 0.95)] * 1000,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--make-eval", action="store_true", help="write bench/data/resolver_eval.tsv.gz again"
    )
    parser.add_argument("--limit", type=int, default=0, help="evaluate only every Nth title (quick runs)")
    args = parser.parse_args()
    started = time.perf_counter()
    lists = CodeLists.shipped()
    loaded = time.perf_counter() - started
    if args.make_eval:
        rows = make_eval(lists)
        EVAL.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(EVAL, "wt", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, FIELDS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"{len(rows)} titles written to {EVAL}")
    with gzip.open(EVAL, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if args.limit:
        rows = rows[:: args.limit]
    started = time.perf_counter()
    production = Resolver(lists)
    built = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del production
    held = Resolver(lists, exclude=held_out)
    results = evaluate(held, rows)
    print(f"machine: {sys.platform}, one core; code lists {lists.version}")
    print(f"load the shipped lists {loaded:.2f} s; build the full index {built:.2f} s (target ≤ 60 s)")
    print(f"peak resident memory with the lists and one index: {rss_mb:.0f} MB (target ≤ 300 MB)")
    for lang, figures in results.items():
        print(
            lang, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        )
    variants: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row["ambiguous"]:
            continue
        answer = held.resolve(row["title"], row["lang"])
        v = variants[row["variant"]]
        v["n"] += 1
        v[answer.decision] += 1
        v["wrong"] += answer.decision == "unit_group" and answer.isco08 != row["isco08"]
    for name, v in sorted(variants.items()):
        n = v["n"]
        print(
            f"  {name:11} n={n:5} unit={v['unit_group'] / n:.3f} ancestor={v['ancestor'] / n:.3f} "
            f"abstained={v['abstained'] / n:.3f} wrong-unit={v['wrong'] / n:.3f}"
        )


if __name__ == "__main__":
    main()
