"""France Travail profiles in the project's documented JSON format (docs/formats/france-travail-profile.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from spehub.v1 import profile_pb2

from adapters.base import load
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.adapters import check_file

HERE = Path(__file__).resolve().parent
FILE = HERE / "fixtures" / "france_travail" / "profils.json"
GOLDEN = HERE / "golden" / "france_travail"


@pytest.fixture(scope="module")
def adapter(codelists):
    return load(
        "france-travail-profiles",
        codelists=codelists,
        origin_participant_id="fr-francetravail",
        subject_key=b"k" * 32,
    )


def test_golden_the_bad_profile_is_reported_and_the_good_one_goes_through(adapter):
    profile, personal, ambiguous, ambiguous_personal = adapter.read(FILE)
    assert ambiguous_personal.held is not None  # held with its profile
    assert profile.record == json_format.Parse(
        (GOLDEN / "profils.0.profile.json").read_text("utf-8"), profile_pb2.CandidateProfile()
    )
    assert personal.record == json_format.Parse(
        (GOLDEN / "profils.0.personal.json").read_text("utf-8"), profile_pb2.PersonalDetails()
    )
    # The job title picks 7114 out of the five unit groups ROME F1703 spans; without a known title, nothing is guessed.
    assert profile.record.occupations[0].isco08_code == "7114"
    assert profile.record.occupations[0].national_code.code == "F1703"
    # F1703 with a title the lists cannot settle among the fiche's groups: held for review, not guessed.
    assert ambiguous.ok and ambiguous.held is not None and ambiguous.location.endswith("$.profils[1]")
    assert "spans several ISCO-08 unit groups" in ambiguous.held.reason
    assert ambiguous.record.occupations[0].isco08_code == ""
    # The version follows dateActualisation, so a newer export supersedes the older one at the hub.
    assert profile.record.header.version == 1790926200
    for record, kind in (
        (profile.record, PayloadKind.CANDIDATE_PROFILE),
        (personal.record, PayloadKind.PERSONAL_DETAILS),
    ):
        records.parse(kind, record.SerializeToString())
    assert check_file(adapter, FILE)[:2] == (2, 0)  # the held profile is neither good nor refused


def _profile(**changes):
    base = json.loads(FILE.read_text("utf-8"))["profils"][0]
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"identifiant": None}, "identifiant"),
        ({"dateActualisation": "2026-10-02"}, "dateActualisation"),
        ({"format": "autre/2"}, "format"),
        ({"metiersRecherches": [{"codeRome": "Z9999"}]}, "metiersRecherches[0].codeRome"),
        ({"metiersRecherches": []}, "metiersRecherches"),
    ],
)
def test_a_profile_without_what_the_hub_needs_is_refused(adapter, changes, field):
    (result,) = adapter.convert_item(_profile(**changes), "f:$")
    assert not result.ok
    assert field in {p.field for p in result.problems}, result.problems
    assert "Lefèvre" not in " ".join(str(p) for p in result.problems)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"langues": [{"code": "en", "niveauCECRL": "so-so"}]}, "langues[0]"),
        ({"telephone": "0612"}, "telephone"),
        ({"mobilite": {"typesContrat": ["INTERIM"]}}, "mobilite.typesContrat[0]"),
        ({"experiences": [{"debut": "sept. 2019"}]}, "experiences[0].debut"),
        ({"dateNaissance": "12/04/1990"}, "dateNaissance"),
        ({"nationalites": ["France"]}, "nationalites[0]"),
    ],
)
def test_an_unreadable_optional_field_is_dropped_with_a_warning(adapter, changes, field):
    profile, personal = adapter.convert_item(_profile(**changes), "f:$")
    assert profile.ok and personal.ok
    assert (field, "warning") in {(p.field, p.severity) for p in profile.problems}, profile.problems
    assert "Lefèvre" not in " ".join(str(p) for p in profile.problems)
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())


@settings(max_examples=40, deadline=None)
@given(
    languages=st.lists(
        st.tuples(
            st.sampled_from(["en", "ar", "wo", "pt"]),
            st.sampled_from(["A1", "B2", "C2", "langue maternelle"]),
        ),
        max_size=3,
        unique_by=lambda t: t[0],
    ),
    countries=st.lists(st.sampled_from(["SE", "CA", "SN", "MA"]), unique=True, max_size=3),
    contracts=st.lists(st.sampled_from(["CDI", "CDD", "SAI", "CIR"]), unique=True, max_size=4),
    summary=st.text(max_size=80),
)
def test_round_trip_is_stable(adapter, languages, countries, contracts, summary):
    source = _profile(
        langues=[{"code": c, "niveauCECRL": lv} for c, lv in languages],
        mobilite={"pays": countries, "typesContrat": contracts},
        resume=summary,
    )
    profile, personal = adapter.convert_item(source, "p")
    assert profile.ok, profile.problems
    again, _ = adapter.convert_item(
        {**source, **adapter.write(profile.record), **adapter.write(personal.record)}, "q"
    )
    assert again.record == profile.record
    for record in (profile.record, personal.record):
        assert adapter.round_trip(record, "r") == record
