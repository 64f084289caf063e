"""The occupation resolver: titles as people write them, at the level the evidence supports."""

from __future__ import annotations

import json

import pytest

from adapters.resolver import Answer, Candidate, Resolver, common_group, decide, variants
from hub.entrypoints.cli import main


@pytest.fixture(scope="module")
def resolver(codelists) -> Resolver:
    return Resolver(codelists)


# The titles of issue 15: each right, or a true ancestor of the right unit group.
RIGHT = [
    ("Chauffeur poids lourd", "8332"),
    ("Chauffeur PL", "8332"),  # an abbreviation
    ("aide soignante", "5321"),  # ESCO's preferred label wins over another group's alternative one
    ("Cuisinier (h/f/x)", "5120"),  # a gender tag
    ("électricien bâtiment", "7411"),  # no "du": missing function words
    ("Construction Managers", "1323"),  # a plural
    ("Femme de chambre", "9112"),
    ("Soudeur", "7212"),
    ("Développeur web", "2513"),
    ("Auxiliaire de vie", "5322"),
    ("Serveuse", "5131"),
    ("Maçon / Maçonne", "7112"),  # a gendered pair
    ("Cueilleur de fraises", "9211"),  # "fraise" is also a milling cutter: only the head word decides
    ("Ouvrier agricole saisonnier", "9213"),
    ("Infirmier", "2221"),  # one word heading a family of labels: their common group
]


@pytest.mark.parametrize(("title", "isco"), RIGHT, ids=[t for t, _ in RIGHT])
def test_titles_as_people_write_them(resolver, title, isco):
    answer = resolver.resolve(title)
    assert answer.decision in ("unit_group", "ancestor"), answer
    assert isco.startswith(answer.isco08), (answer.isco08, answer.candidates[:3])


def test_one_word_gives_the_group_of_the_labels_it_heads(resolver):
    """ "Infirmier" alone is no label: ESCO and ROME hold only specialised nurses' titles
    ("infirmier scolaire", "infirmier vétérinaire"…). 40 of the 52 it heads are nursing
    professionals (2221), so it is resolved to their minor group 222, not to a unit group."""
    for title in ("Infirmier", "infirmière", "Infirmier (H/F)"):
        answer = resolver.resolve(title, "fr")
        assert (answer.decision, answer.isco08) == ("ancestor", "222"), title
    assert resolver.resolve("Chauffeur", "fr").isco08 == "83"  # drivers of every kind


def test_a_title_the_lists_cannot_settle_is_abstained_not_guessed(resolver):
    """ "Ouvrier" heads labels of labourers, operators and craft workers alike: no group holds
    three quarters of them."""
    answer = resolver.resolve("Ouvrier", "fr")
    assert answer.decision == "abstained" and answer.isco08 == ""
    assert len(answer.candidates) >= 3  # suggestions for a person to choose


def test_one_typo_in_a_long_word_is_read(resolver):
    assert resolver.resolve("Soudueur").isco08 == "7212"
    assert resolver.resolve("électricien du bâtimnet").isco08 == "7411"


def test_a_french_word_is_not_taken_for_a_misspelt_english_one(resolver):
    """ "maçon" is French, not "mason" with a typo (7113, stonemasons)."""
    assert resolver.resolve("Maçon").isco08 == "7112"


def test_word_order_case_accents_and_punctuation_do_not_matter(resolver):
    answers = {
        resolver.resolve(t).isco08
        for t in (
            "électricien du bâtiment",
            "ELECTRICIEN DU BATIMENT",
            "bâtiment, électricien",
            "Électricien - bâtiment",
        )
    }
    assert answers == {"7411"}


def test_the_language_hint_restricts_the_labels(resolver):
    assert resolver.resolve("Soudeur", "fr").isco08 == "7212"
    assert resolver.resolve("Soudeur", "en").decision != "unit_group"  # no English label says soudeur


def test_within_restricts_to_a_ROME_fiches_unit_groups(resolver):
    """A national code spanning several unit groups is decided by the title among those only."""
    answer = resolver.resolve("Maraîchère", within=frozenset({"9211", "6113"}))
    assert answer.isco08 in ("9211", "6113", "921", "611", "")
    assert all(c.isco08 in {"9211", "6113"} for c in answer.candidates)


def test_gender_tags_and_pairs_give_the_ways_a_title_may_be_meant():
    assert variants("Cuisinier (H/F)") == ["Cuisinier"]
    assert variants("Vendeur H/F/X") == ["Vendeur"]
    assert variants("Maçon / Maçonne") == ["Maçon Maçonne", "Maçon", "Maçonne"]


def _c(isco: str, score: float, exact: bool = False, preferred: bool = False) -> Candidate:
    return Candidate(f"uri-{isco}-{score}", isco, score, "label", exact, preferred)


def test_decide_unit_group_ancestor_or_abstained():
    assert decide([_c("7112", 0.95), _c("7113", 0.7)]).decision == "unit_group"
    close = decide([_c("7112", 0.95), _c("7113", 0.9)])
    assert (close.decision, close.isco08) == ("ancestor", "711")
    assert decide([_c("7112", 0.95), _c("2221", 0.9)]).decision == "abstained"
    assert decide([_c("7112", 0.3)]).decision == "abstained"
    assert decide([]).decision == "abstained"
    weak = decide([_c("7112", 0.7)])  # agreed but weak: the minor group at most
    assert (weak.decision, weak.isco08) == ("ancestor", "711")
    exact = decide([_c("5321", 1.0, exact=True, preferred=True), _c("2635", 0.9, exact=True)])
    assert (exact.decision, exact.isco08) == ("unit_group", "5321")


def test_thresholds_are_per_language_and_strictest_when_unknown():
    labels = [_c("7112", 0.72), _c("7212", 0.55)]  # score 0.72, lead 0.17
    assert decide(labels, "en").decision == "unit_group"  # English: 0.70 and a lead of 0.16
    assert decide(labels, "fr").isco08 == "711"  # French asks 0.75: the minor group at most
    assert decide(labels).isco08 == "711"  # unknown language: the stricter of each
    narrow = [_c("7112", 0.9), _c("7212", 0.76)]  # lead 0.14: enough in French, not in English
    assert decide(narrow, "fr").decision == "unit_group"
    assert decide(narrow, "en").decision != "unit_group"


def test_common_group():
    assert common_group(["7112", "7113", "7119"]) == "711"
    assert common_group(["7112", "7212"]) == "7"
    assert common_group(["7112", "2221"]) == ""


@pytest.mark.slow
def test_resolve_command_and_its_json(capsys, tmp_path):
    titles = tmp_path / "titles.txt"
    titles.write_text("Soudeur\n\nOuvrier\n", encoding="utf-8")
    assert main(["codelists", "resolve", "--json", "--file", str(titles), "Maçon / Maçonne"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["title"] for line in lines] == ["Maçon / Maçonne", "Soudeur", "Ouvrier"]
    mason, welder, nurse = lines
    assert welder["isco08"] == "7212"
    assert set(mason) == {
        "title",
        "isco08",
        "level",
        "decision",
        "score",
        "esco_uri",
        "label",
        "alternatives",
    }
    assert (mason["isco08"], mason["level"], mason["decision"]) == ("7112", "unit", "unit_group")
    assert mason["esco_uri"].startswith("http://data.europa.eu/esco/occupation/")
    assert len(mason["alternatives"]) == 3 and all(
        {"esco_uri", "isco08", "label", "score"} == set(a) for a in mason["alternatives"]
    )
    assert (nurse["decision"], nurse["isco08"], nurse["esco_uri"]) == ("abstained", "", "")
    assert len(nurse["alternatives"]) == 3  # the suggestions a person chooses from
    assert main(["codelists", "resolve", "Soudeur"]) == 0
    assert "7212 unit" in capsys.readouterr().out
    assert main(["codelists", "resolve"]) == 2
    assert main(["codelists", "resolve", "--file", str(tmp_path / "none.txt")]) == 2


def test_answer_levels():
    assert Answer("7112", "unit_group", 1.0, ()).level == "unit"
    assert Answer("711", "ancestor", 1.0, ()).level == "minor"
    assert Answer("71", "ancestor", 1.0, ()).level == "sub-major"
    assert Answer("7", "ancestor", 1.0, ()).level == "major"
    assert Answer("", "abstained", 0.0, ()).level == ""


def test_one_spes_aliases_are_not_another_s(codelists):
    """The shipped lists are read once per process, but each holder has its own aliases."""
    from adapters.codelists import CodeLists, alias_key

    mine, theirs = CodeLists.shipped(), CodeLists.shipped()
    mine.use_aliases({alias_key("Bâtisseur de rêves", "fr"): {"isco08": "7112", "esco_uri": ""}})
    assert mine.resolve_title("Bâtisseur de rêves", "fr").isco08 == "7112"
    assert mine.resolve_title("Bâtisseur de rêves", "fr").method == "alias"
    assert theirs.resolve_title("Bâtisseur de rêves", "fr").isco08 is None
    assert mine.resolver() is theirs.resolver()  # the index is built once
