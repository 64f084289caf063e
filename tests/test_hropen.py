"""The EURES HR Open JSON adapter: PositionOpening ↔ JobOffer, Candidate ↔ profile and personal details."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from spehub.v1 import offer_pb2, profile_pb2

from adapters.base import AdapterError, load
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.adapters import check_file
from tests.support.hubs import SAMPLES

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "hropen"
GOLDEN = HERE / "golden" / "hropen"
KEY = b"k" * 32


@pytest.fixture
def adapter(codelists):
    return load("eures-hropen", codelists=codelists, origin_participant_id="ma-anapec", subject_key=KEY)


def _golden(name: str, message):
    return json_format.Parse((GOLDEN / name).read_text(encoding="utf-8"), message)


def test_position_opening_golden_and_round_trip(adapter):
    (converted,) = adapter.read(FIXTURES / "position_opening_seasonal.json")
    assert converted.ok and not converted.problems
    assert converted.record == _golden("position_opening_seasonal.offer.json", offer_pb2.JobOffer())
    assert records.parse(PayloadKind.JOB_OFFER, converted.record.SerializeToString()).record_id == (
        "EU-ES-2026-0042"
    )
    # The lowest CEFR dimension is the requirement (A1 of A2/A1): never overstated.
    assert converted.record.required_languages[0].level == 1
    assert adapter.convert(adapter.write(converted.record), "again").record == converted.record


def test_candidate_golden_two_records_and_round_trip(adapter):
    profile, personal = adapter.read(FIXTURES / "candidate_ma.json")
    assert profile.ok and personal.ok
    assert profile.record == _golden("candidate_ma.profile.json", profile_pb2.CandidateProfile())
    assert personal.record == _golden("candidate_ma.personal.json", profile_pb2.PersonalDetails())
    # Arabic script kept as written; the national phone number normalised with Morocco's plan.
    assert personal.record.family_name == "بنعلي"
    assert personal.record.contacts[0].value == "+212612345678"
    # The document id is keyed, never carried.
    assert "77310" not in profile.record.SerializeToString().decode("utf-8", "replace")
    for record in (profile.record, personal.record):
        assert adapter.round_trip(record, "again") == record
    good, bad, lines = check_file(adapter, FIXTURES / "candidate_ma.json")
    assert (good, bad, lines) == (2, 0, [])


@pytest.mark.needs_samples
def test_placeholder_samples_are_reported_field_by_field(adapter):
    """The vendor examples in ../shared/samples carry placeholders ("string", "date"): each is reported."""
    (offer,) = adapter.read(SAMPLES / "hropen_json" / "jazzhr_hropen_position_openings_example.json")
    assert not offer.ok
    fields = {p.field for p in offer.problems}
    assert {
        "validFrom",
        "positionProfiles[0].jobCategories",
        "positionProfiles[0].positionLocation[0].countryCode",
        "positionProfiles[0].positionOfferingTypeCodes",
    } <= fields
    assert offer.location.endswith("jazzhr_hropen_position_openings_example.json:$[0]")
    (candidate,) = adapter.read(SAMPLES / "hropen_json" / "jazzhr_hropen_candidate_export.sample.json")
    assert not candidate.ok and candidate.location.endswith(":$.candidate")
    assert "person.communication.address[0].countryCode" in {p.field for p in candidate.problems}


def _candidate(**changes):
    data = json.loads((FIXTURES / "candidate_ma.json").read_text(encoding="utf-8"))["candidate"]
    for path, value in changes.items():
        target = data
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"),
    [
        (
            "profiles.0.positionPreferences.0.jobCategories",
            [{"code": "9999", "listName": "ISCO2008"}],
            "profiles[0].positionPreferences.jobCategories",
            "not an ISCO-08 group",
        ),
        ("person.name", {"given": "x"}, "person.name.family", "missing"),
    ],
)
def test_a_candidate_without_what_the_hub_needs_is_refused(adapter, path, value, field, reason):
    (result,) = adapter.convert_candidate(_candidate(**{path: value}), "f:$")
    assert not result.ok
    assert any(p.field == field and reason in p.reason for p in result.problems), result.problems
    # The report never repeats the person's values.
    assert "بنعلي" not in " ".join(str(p) for p in result.problems)


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"),
    [
        (
            "profiles.0.qualifications.1.competencyDimensions",
            [{"type": "CEF-Writing", "score": {"value": "good"}}],
            "profiles[0].qualifications[1]",
            "no CEFR level",
        ),
        (
            "person.communication.phone",
            [{"formattedNumber": "12"}],
            "person.communication.phone[0]",
            "not a valid phone number for MA",
        ),
        ("person.birthDate", "12/04/1996", "person.birthDate", "YYYY-MM-DD"),
        ("person.citizenship", ["Maroc"], "person.citizenship[0]", "ISO 3166-1"),
        (
            "profiles.0.licenses",
            [{"type": {"name": "permis poids lourd"}}],
            "profiles[0].licenses[0].type",
            "driving licence category",
        ),
        ("profiles.0.employment.0.start", "mars 2022", "profiles[0].employment[0].start", "YYYY"),
    ],
)
def test_an_unreadable_optional_value_is_dropped_with_a_warning(adapter, path, value, field, reason):
    """Optional in the schema and unreadable: dropped, with a warning naming the field; the
    candidate still converts into records the hub accepts."""
    profile, personal = adapter.convert_candidate(_candidate(**{path: value}), "f:$")
    assert profile.ok and personal.ok
    assert any(
        p.field == field and reason in p.reason and p.severity == "warning" for p in profile.problems
    ), profile.problems
    assert "بنعلي" not in " ".join(str(p) for p in profile.problems)
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())


def test_a_birth_year_alone_and_a_language_with_some_dimensions(adapter):
    dims = [
        {"type": "CEF-Listening", "score": {"value": "B2"}},
        {"type": "CEF-Writing", "score": {"value": "A2"}},
    ]
    profile, personal = adapter.convert_candidate(
        _candidate(**{"person.birthDate": "1998", "profiles.0.qualifications.1.competencyDimensions": dims}),
        "f:$",
    )
    assert personal.record.birth_year == 1998 and not personal.record.HasField("birth_date")
    assert any(p.field == "person.birthDate" and p.severity == "warning" for p in profile.problems)
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())


def test_a_closed_position_or_wrong_types_are_refused_and_the_file_goes_on(adapter, tmp_path):
    opening = json.loads((FIXTURES / "position_opening_seasonal.json").read_text(encoding="utf-8"))
    closed = {**opening, "statusCode": "Closed", "documentId": {"value": "closed-1"}}
    broken = {
        **opening,
        "positionProfiles": [{**opening["positionProfiles"][0], "offeredRemunerationPackage": "good pay"}],
    }
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([closed, broken, opening]), encoding="utf-8")
    first, second, third = adapter.read(path)
    assert not first.ok and any(p.field == "statusCode" for p in first.problems)
    assert not second.ok and "wrong JSON type" in second.problems[0].reason
    assert third.ok


def test_candidates_need_the_subject_key(codelists):
    keyless = load("eures-hropen", codelists=codelists, origin_participant_id="ma-anapec")
    (result,) = keyless.read(FIXTURES / "candidate_ma.json")
    assert not result.ok and "subject key" in result.problems[0].reason
    with pytest.raises(AdapterError, match="32 bytes"):
        load("eures-hropen", codelists=codelists, origin_participant_id="x", subject_key=b"short")
