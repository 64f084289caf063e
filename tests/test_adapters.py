"""Code lists from the publishers' files, the adapter registry, the France Travail adapter and the conformance kit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from spehub.v1 import common_pb2, offer_pb2

from adapters.base import AdapterError, available, load
from adapters.codelists import CodeLists, integrity
from adapters.france_travail import FranceTravailOffers
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.cli import main

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "samples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "france_travail"


@pytest.fixture
def adapter(codelists) -> FranceTravailOffers:
    return FranceTravailOffers(codelists, "fr-francetravail", ("SN",))


def test_code_lists_are_complete_and_consistent(codelists):
    report = integrity(codelists)
    assert report.units == 436
    assert report.ok, (report.missing_parents[:5], {k: v[:5] for k, v in report.dangling.items()})
    assert codelists.isco_units["7512"]["fr"].startswith("Boulangers")
    assert report.unmapped["rome_fiches_ambiguous"] > 0  # counted and reported, not hidden


def test_integrity_reports_what_is_broken(codelists):
    orphan = {"en": "x", "fr": "x", "major": "9", "sub_major": "99", "minor": "999"}
    broken = CodeLists(
        **{
            **codelists.__dict__,
            "isco_units": {**codelists.isco_units, "9999": orphan},
            "esco": {**codelists.esco, "http://data.europa.eu/esco/occupation/x": "0000"},
        }
    )
    report = integrity(broken)
    assert not report.ok
    assert "9999: sub_major 99" in report.missing_parents
    assert report.dangling["esco"] == ["0000"]


@pytest.mark.parametrize(
    ("rome", "title", "isco"),
    [
        ("D1102", "Boulanger / Boulangère", "7512"),  # the job title, through the official ESCO mapping
        ("D1102", "BOULANGER /  boulangère", "7512"),  # case and spacing do not matter
        ("N4101", "", "8332"),  # a fiche with a single unit group
        ("A1401", "", None),  # ambiguous: reported, not guessed
        ("Z9999", "", None),  # unknown
    ],
)
def test_rome_resolution_never_guesses(codelists, rome, title, isco):
    resolution = codelists.resolve_rome(rome, title)
    assert resolution.isco08 == isco
    if isco is None:
        assert rome in resolution.how


def test_code_lists_are_versioned_and_reloadable(codelists, tmp_path):
    path = codelists.save(tmp_path)
    assert path.name == f"{codelists.version}.json"
    again = CodeLists.load(tmp_path / "current.json")
    assert again.version == codelists.version and again.resolve_rome("N4101").isco08 == "8332"


def test_registry_finds_adapters_by_name(codelists):
    assert "france-travail-offers" in available()
    assert (
        load("france-travail-offers", codelists=codelists, origin_participant_id="fr-x").name
        == "france-travail-offers"
    )
    with pytest.raises(AdapterError, match=r"installed: .*france-travail-offers"):
        load("nope", codelists=codelists)


@pytest.mark.needs_samples
@pytest.mark.parametrize(
    ("name", "record_id"),
    [("ft_offer_167ZKWX_2024", "FT-167ZKWX"), ("ft_search_response_doc_example_048KLTP", "FT-048KLTP")],
)
def test_france_travail_golden(adapter, name, record_id):
    (converted,) = list(adapter.read(SAMPLES / "france_travail" / f"{name}.json"))
    assert converted.ok
    expected = json_format.Parse((GOLDEN / f"{name}.offer.json").read_text(), offer_pb2.JobOffer())
    assert converted.record == expected
    # The common record is one the hub accepts.
    parsed = records.parse(PayloadKind.JOB_OFFER, converted.record.SerializeToString())
    assert parsed.record_id == record_id
    # And back: national → common → national → common is stable.
    assert adapter.convert(adapter.write(converted.record), "again").record == converted.record


@pytest.mark.needs_samples
def test_a_rome_fiche_spanning_several_unit_groups_is_settled_by_the_title_among_them(adapter, codelists):
    """I1401 spans several ICT unit groups: these two offers used to be refused; the job title now
    decides among the fiche's groups only, at the level it can (an ancestor when it cannot say more)."""
    results = list(
        adapter.read(SAMPLES / "france_travail" / "ft_offers_4369834_4162319_pass-emploi-mock.json")
    )
    assert [r.ok for r in results] == [True, True] and not any(r.held for r in results)
    first, second = (r.record.occupation for r in results)
    fiche = set(codelists.rome_fiches["I1401"]["candidates"])
    assert (first.isco08_code, first.resolution.decision) == ("351", common_pb2.RESOLUTION_DECISION_ANCESTOR)
    assert any(code.startswith("351") for code in fiche)
    assert second.isco08_code in fiche and second.resolution.method == "national_code_and_title"
    assert first.national_code.code == second.national_code.code == "I1401"  # kept, though the title decided
    assert results[0].location.endswith("$.resultats[0]")


# A France Travail offer written by the project (the shape of the API's "offres d'emploi v2").
OWN_OFFER = {
    "id": "201ABCD",
    "intitule": "Maçon / Maçonne (H/F)",
    "dateActualisation": "2026-10-28T14:01:33.457Z",
    "romeCode": "F1703",
    "appellationlibelle": "Maçon / Maçonne",
    "entreprise": {"nom": "Bâtiments du Rhône"},
    "lieuTravail": {"libelle": "69 - LYON 03", "codePostal": "69003"},
    "typeContrat": "CDD",
    "typeContratLibelle": "Contrat à durée déterminée - 2 Mois",
    "experienceExige": "S",
    "experienceLibelle": "6 Mois",
    "qualificationCode": "6",
    "qualificationLibelle": "Employé qualifié",
}


def test_france_travail_fields_real_offers_carry(adapter):
    """Milliseconds in dateActualisation round-trip; nombrePostes left out is one position; the
    contract's duration, the desired experience and the qualification are carried, not dropped."""
    converted = adapter.convert(dict(OWN_OFFER), "own")
    offer = converted.record
    assert converted.ok, converted.problems
    assert offer.header.updated_at.nanos == 457_000_000 and offer.positions == 1
    assert [(p.field, p.severity) for p in converted.problems] == [("nombrePostes", "warning")]
    assert offer.contract.duration_months == 2 and offer.required_experience_months == 0
    assert offer.desired_experience_months == 6
    assert (offer.position_level.system, offer.position_level.code) == ("FT-QUALIFICATION", "6")
    assert adapter.convert(adapter.write(offer), "again").record == offer
    for bad in (0, "3", True):
        refused = adapter.convert({**OWN_OFFER, "nombrePostes": bad}, "bad")
        assert not refused.ok and refused.problems[0].field == "nombrePostes"
    days = adapter.convert({**OWN_OFFER, "typeContratLibelle": "Mission intérimaire - 15 Jour(s)"}, "d")
    assert days.ok and days.record.contract.duration_months == 0
    assert any(p.field == "typeContratLibelle" for p in days.problems)


def test_a_round_trip_that_changes_a_record_names_the_field_and_hides_personal_values():
    from spehub.v1 import profile_pb2

    from hub.entrypoints.adapters import first_difference

    before = profile_pb2.PersonalDetails(family_name="Ndiaye")
    before.other_scripts.add(script="Arab", family_name="انجاي")
    after = profile_pb2.PersonalDetails(family_name="Ndiay")
    after.other_scripts.add(script="Latn", family_name="انجاي")
    assert first_difference(before, after) == "family_name changed (values not shown)"
    after.family_name = "Ndiaye"
    assert first_difference(before, after) == "other_scripts[0].script changed (values not shown)"
    offer, again = offer_pb2.JobOffer(), offer_pb2.JobOffer()
    offer.occupation.isco08_code, again.occupation.isco08_code = "7112", "711"
    assert first_difference(offer, again) == "occupation.isco08_code: '7112' became '711'"


def _offer(**overrides):
    base = json.loads(
        (SAMPLES / "france_travail" / "ft_search_response_doc_example_048KLTP.json").read_text()
    )["resultats"][0]
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.needs_samples
def test_tricky_inputs(adapter, tmp_path):
    bom = tmp_path / "bom.json"
    bom.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(
            [_offer(), _offer(id="X2", typeContrat="LIB"), _offer(id="X3", nombrePostes=None)]
        ).encode()
    )
    good, unknown_contract, no_positions = adapter.read(bom)
    assert good.ok
    assert not unknown_contract.ok and unknown_contract.problems[0].field == "typeContrat"
    # Real offers leave nombrePostes out: one position, with a warning that says so.
    assert no_positions.ok and no_positions.record.positions == 1
    assert [(p.field, p.severity) for p in no_positions.problems if p.field == "nombrePostes"] == [
        ("nombrePostes", "warning")
    ]
    bare = adapter.convert(
        _offer(formations=None, langues=None, competences=None, salaire=None, codeNAF=None), "x"
    )
    assert bare.ok and not bare.problems  # optional fields may be missing
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    (broken,) = adapter.read(junk)
    assert not broken.ok and "JSON" in broken.problems[0].reason
    assert not adapter.convert("not an object", "y").ok


def _own_offer(offer_id: str) -> dict[str, object]:
    """An offer in France Travail's search-response shape, written for this test (no sample needed)."""
    return {
        "id": offer_id,
        "intitule": "Maçon / Maçonne",
        "dateCreation": "2026-10-01T08:00:00.000Z",
        "dateActualisation": "2026-10-02T08:00:00.000Z",
        "lieuTravail": {"libelle": "13 - Marseille", "codePostal": "13001", "commune": "13001"},
        "romeCode": "F1703",
        "appellationlibelle": "Maçon / Maçonne",
        "entreprise": {"nom": "Entreprise"},
        "typeContrat": "CDD",
        "nombrePostes": 2,
    }


def test_a_file_is_read_one_record_at_a_time_and_a_fault_part_way_keeps_what_came_before(adapter, tmp_path):
    """The records of a search response come out before the end of the file is read: a file cut
    off (or corrupted) part-way gives the records before the fault, then a problem naming where."""
    offers = [_own_offer(f"X{i}") for i in range(3)]
    whole = json.dumps({"resultats": offers, "filtresPossibles": []})
    cut = tmp_path / "cut.json"
    cut.write_text(whole[: whole.index('"X2"') + 10])  # inside the third offer
    *read, fault = adapter.read(cut)
    assert [c.record.header.record_id for c in read] == ["FT-X0", "FT-X1"] and all(c.ok for c in read)
    assert not fault.ok and "after record 2" in fault.location
    assert (
        "not readable JSON" in fault.problems[0].reason
        and "records before it were read" in fault.problems[0].reason
    )
    # The array may come after other keys; its places are numbered as in the file.
    later = tmp_path / "later.json"
    later.write_text(json.dumps({"filtresPossibles": [{"filtre": "x"}], "resultats": offers}))
    places = [c.location for c in adapter.read(later)]
    assert [p.rsplit(":", 1)[1] for p in places] == [f"$.resultats[{i}]" for i in range(3)]
    # Bytes that are not UTF-8 are a fault too, reported, not a crash.
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"resultats": [{"id": "\xff\xfe"}]}')
    (bad,) = adapter.read(binary)
    assert not bad.ok and "not readable JSON" in bad.problems[0].reason


@pytest.mark.needs_samples
@settings(max_examples=60, deadline=None)
@given(
    offer_id=st.from_regex(r"[A-Z0-9]{7}", fullmatch=True),
    title=st.text(min_size=1, max_size=60).filter(str.strip),
    contract=st.sampled_from(["CDI", "CDD", "MIS", "SAI"]),
    positions=st.integers(min_value=1, max_value=500),
    hours=st.integers(min_value=1, max_value=48),
    minutes=st.sampled_from([0, 30]),
    years=st.integers(min_value=0, max_value=10),
)
def test_round_trip_is_stable(codelists, offer_id, title, contract, positions, hours, minutes, years):
    adapter = FranceTravailOffers(codelists, "fr-francetravail")
    offer = _offer(
        id=offer_id,
        intitule=title,
        typeContrat=contract,
        nombrePostes=positions,
        dureeTravailLibelle=f"{hours}H{minutes:02d}",
        experienceExige="E" if years else "D",
        experienceLibelle=f"{years} An(s)" if years else "Débutant accepté",
    )
    first = adapter.convert(offer, "p")
    assert first.ok, first.problems
    assert adapter.convert(adapter.write(first.record), "q").record == first.record


@pytest.mark.needs_samples
def test_codelists_and_conformance_commands(tmp_path, capsys):
    out = tmp_path / "codelists"
    assert main(["codelists", "import", str(SAMPLES / "crosswalks"), "--out", str(out)]) == 0
    assert main(["codelists", "check", "--out", str(out)]) == 0
    good = str(SAMPLES / "france_travail" / "ft_offer_167ZKWX_2024.json")
    broken = json.loads((SAMPLES / "france_travail" / "ft_offer_167ZKWX_2024.json").read_text())
    broken.pop("intitule")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    bad = str(tmp_path / "broken.json")
    common = [
        "adapter",
        "check",
        "france-travail-offers",
        "--origin",
        "fr-francetravail",
        "--codelists",
        str(out),
    ]
    assert main([*common, good]) == 0
    assert main([*common, good, bad]) == 1
    report = capsys.readouterr().out
    assert "1 record(s) convert, validate and round-trip" in report and "intitule" in report
    assert main(["adapter", "check", "nope", good, "--origin", "x", "--codelists", str(out)]) == 2


@pytest.fixture
def jobtech(codelists):
    from adapters.jobtech import JobTechAds

    return JobTechAds(codelists, "se-arbetsformedlingen", ("SN", "MA"))


@pytest.mark.needs_samples
@pytest.mark.parametrize(
    "name",
    ["jobsearch_ad_23187561_sokannonser_testdata", "jobsearch_ad_22884504_elastic-importers_converted"],
)
def test_jobtech_golden(jobtech, name):
    (converted,) = list(jobtech.read(SAMPLES / "jobtech" / f"{name}.json"))
    expected = json_format.Parse(
        (Path(__file__).parent / "golden" / "jobtech" / f"{name}.offer.json").read_text(),
        offer_pb2.JobOffer(),
    )
    assert converted.record == expected
    records.parse(PayloadKind.JOB_OFFER, converted.record.SerializeToString())
    assert jobtech.round_trip(converted.record, "again") == converted.record


@pytest.mark.needs_samples
def test_jobtech_elasticsearch_response_and_refusals(jobtech, tmp_path):
    results = list(jobtech.read(SAMPLES / "jobtech" / "sokannonser_platsannons_results_eng.es.json"))
    assert len(results) == 2 and all(r.ok for r in results)
    ad = json.loads((SAMPLES / "jobtech" / "jobsearch_ad_23187561_sokannonser_testdata.json").read_text())
    removed = jobtech.convert({**ad, "removed": True}, "x")
    assert not removed.ok and removed.problems[0].field == "removed"
    unknown = jobtech.convert({**ad, "occupation": {"concept_id": "nope_nope_x", "label": "?"}}, "y")
    assert not unknown.ok and unknown.problems[0].field == "occupation.concept_id"
    # Swedish local time without offset: 2019-03-19T00:00 in Stockholm is 23:00 UTC the day before.
    ok = jobtech.convert(ad, "z").record
    assert ok.header.updated_at.ToJsonString() == "2019-03-18T23:00:00Z"
    assert ok.weekly_hours == 40.0  # scope_of_work 100 % of the Swedish full time


def test_code_lists_of_an_older_format_are_refused_with_what_to_do(codelists, tmp_path, capsys):
    saved = json.loads(codelists.save(tmp_path).read_text(encoding="utf-8"))
    saved.pop("format")  # as written before the format was recorded
    (tmp_path / "current.json").write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ValueError, match="codelists import"):
        CodeLists.load(tmp_path / "current.json")
    assert main(["codelists", "check", "--out", str(tmp_path)]) == 2
    assert "codelists import" in capsys.readouterr().err
    assert main(["codelists", "check", "--out", str(tmp_path / "none")]) == 2


def test_titles_fold_case_and_accents_but_keep_every_script():
    from adapters.codelists import normalise

    assert normalise("  Cimentière   ENDUISEUSE ") == "cimentiere enduiseuse"
    assert normalise("Manœuvre") == normalise("manoeuvre")
    # Arabic words stay distinct (they used to fold to nothing and collide).
    assert normalise("ألمانيا") != normalise("إيطاليا") and normalise("ألمانيا")


def test_the_shipped_code_lists_are_what_the_importer_builds_from_the_publishers_files(codelists, tmp_path):
    """adapters/data/codelists.json.gz is the importer's output, not a hand-edited file."""
    if not (SAMPLES / "crosswalks").is_dir():
        pytest.skip("the publishers' files are in ../shared/samples/crosswalks, absent from this checkout")
    fresh = CodeLists.import_sources(SAMPLES / "crosswalks")
    assert fresh.version == codelists.version
    assert fresh._saved() == codelists._saved()
    fresh.save_shipped(tmp_path / "codelists.json.gz")
    shipped = Path(__file__).resolve().parent.parent / "adapters" / "data"
    assert (tmp_path / "codelists.json.gz").read_bytes() == (shipped / "codelists.json.gz").read_bytes()
    assert (tmp_path / "SOURCES.md").read_text() == (shipped / "SOURCES.md").read_text()


def test_the_shipped_code_lists_name_their_sources_and_hold_every_esco_label(codelists):
    text = (Path(__file__).resolve().parent.parent / "adapters" / "data" / "SOURCES.md").read_text()
    assert codelists.version in text and "2011/833/EU" in text and "ROME" in text and "JobTech" in text
    assert set(codelists.sources) == {
        "isco_units",
        "isco_groups",
        "esco",
        "rome_appellations",
        "rome_fiches",
        "jobtech",
        "esco_fr",
        "esco_en",
    }
    assert len(codelists.occupation_labels) == 2942
    mason = next(u for u, labels in codelists.occupation_labels.items() if "maçonne" in labels.get("fr", []))
    assert codelists.esco[mason].startswith("71")


def test_the_cli_uses_the_shipped_lists_when_none_were_imported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no var/codelists here
    assert main(["codelists", "check"]) == 0
    assert "436 unit groups" in capsys.readouterr().out
