"""EURES HR-XML 3.x: PositionOpening ↔ JobOffer, Candidate ↔ profile + personal details (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from spehub.v1 import common_pb2, offer_pb2, profile_pb2

from adapters.base import load
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.adapters import check_file
from tests.support.hubs import SAMPLES

HERE = Path(__file__).resolve().parent / "fixtures" / "hrxml"
VACANCY = HERE / "vacancy_seasonal_es.xml"
CANDIDATE = HERE / "candidate_electrician.xml"
KEY = b"k" * 32


@pytest.fixture
def adapter(codelists):
    return load(
        "eures-hrxml",
        codelists=codelists,
        origin_participant_id="ma-anapec",
        target_country_codes=("SN",),
        subject_key=KEY,
    )


def test_a_vacancy_becomes_an_offer_the_hub_accepts_and_round_trips(adapter):
    (result,) = adapter.read(VACANCY)
    offer = result.record
    assert result.ok and isinstance(offer, offer_pb2.JobOffer)
    assert offer.header.record_id == "es-sepe-2026-HUE-0042" and offer.header.version > 1
    occupation = offer.occupation
    assert (occupation.isco08_code, occupation.national_code.system, occupation.national_code.code) == (
        "9211",
        "CNO11",
        "9511",
    )
    assert (offer.employer.nace_code, offer.positions, offer.place.postal_code) == ("A01.25", 40, "21800")
    assert offer.contract.type == offer_pb2.CONTRACT_TYPE_SEASONAL
    assert (offer.contract.start_date.year, offer.contract.start_date.month) == (
        2027,
        2,
    )  # DateText "01.02.2027"
    assert (offer.required_experience_months, offer.application_deadline.day) == (3, 15)
    # Spanish at A2 and A1: the lowest, never overstated.
    assert [(lang.language_code, lang.level) for lang in offer.required_languages] == [("es", 1)]
    assert {p.field for p in result.problems} == {"WorkingLanguageCode[1]", "PositionScheduleTypeCode"}
    records.parse(PayloadKind.JOB_OFFER, offer.SerializeToString())
    assert adapter.round_trip(offer, "again") == offer
    assert check_file(adapter, VACANCY)[:2] == (1, 0)


def test_a_candidate_becomes_two_records_with_what_it_seeks(adapter):
    profile, personal = adapter.read(CANDIDATE)
    assert profile.ok and personal.ok
    p, d = profile.record, personal.record
    assert (p.occupations[0].isco08_code, p.occupations[0].title) == ("7411", "Électricien bâtiment")
    assert list(p.desired_country_codes) == ["FR", "BE"]
    assert list(p.mobility_types) == [common_pb2.MOBILITY_TYPE_TEMPORARY]
    assert [(lang.language_code, lang.level) for lang in p.languages] == [("ar", 7), ("fr", 3)]
    assert p.work_experiences[0].occupation.isco08_code == "7411"
    assert (p.qualifications[0].eqf_level, p.skills[0].label) == (4, "installer des prises électriques")
    assert d.birth_year == 1995 and d.contacts[0].value == "+212661234567"
    assert "MA-CV-2026-7781" not in p.header.record_id  # the document id is keyed, never carried
    records.parse(PayloadKind.CANDIDATE_PROFILE, p.SerializeToString())
    records.parse(PayloadKind.PERSONAL_DETAILS, d.SerializeToString())
    assert adapter.round_trip(p, "again") == p
    assert check_file(adapter, CANDIDATE)[:2] == (2, 0)


def test_a_file_of_several_documents_is_read_in_turn(adapter, tmp_path):
    batch = tmp_path / "batch.xml"
    vacancy = VACANCY.read_text("utf-8").split("?>", 1)[1].split("-->", 1)[1]
    candidate = CANDIDATE.read_text("utf-8").split("?>", 1)[1].split("-->", 1)[1]
    batch.write_text(f"<Batch>{vacancy}{candidate}</Batch>", encoding="utf-8")
    results = list(adapter.read(batch))
    assert [type(r.record).__name__ for r in results] == ["JobOffer", "CandidateProfile", "PersonalDetails"]
    assert results[1].location.endswith("/Batch/Candidate[2]")


def test_what_cannot_become_a_record_is_refused_with_a_reason(adapter, codelists, tmp_path):
    closed = tmp_path / "closed.xml"
    closed.write_text(VACANCY.read_text("utf-8").replace(">Active<", ">Closed<"), encoding="utf-8")
    bad_isco = tmp_path / "isco.xml"
    bad_isco.write_text(VACANCY.read_text("utf-8").replace(">9211<", ">9999<"), encoding="utf-8")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<PositionOpening xmlns="http://www.hr-xml.org/3">&b;</PositionOpening>'
    )
    other = tmp_path / "other.xml"
    other.write_text("<Vacancies/>")
    for path, field, reason in (
        (closed, "PositionOpeningStatusCode", "withdraw the record"),
        (bad_isco, "PositionProfile/JobCategoryCode", "9999 is not an ISCO-08 group"),
        (bomb, "/", "EntitiesForbidden"),
        (other, "/", "holds no PositionOpening or Candidate"),
    ):
        (result,) = adapter.read(path)
        assert not result.ok and any(p.field == field and reason in p.reason for p in result.problems), path
    keyless = load("eures-hrxml", codelists=codelists, origin_participant_id="ma-anapec")
    (result,) = keyless.read(CANDIDATE)
    assert not result.ok and "subject key" in result.problems[0].reason
    assert next(iter(keyless.read(VACANCY))).ok  # vacancies need no key


def test_an_unreadable_optional_value_is_dropped_not_refused(adapter, tmp_path):
    text = VACANCY.read_text("utf-8")
    path = tmp_path / "v.xml"
    path.write_text(
        text.replace("<PositionOpenQuantity>40</PositionOpenQuantity>", "")
        .replace("01.02.2027", "en febrero")
        .replace("A01.2.5", "agricultura"),
        encoding="utf-8",
    )
    (result,) = adapter.read(path)
    assert result.ok and result.record.positions == 1 and not result.record.contract.start_date.year
    assert not result.record.employer.nace_code
    assert {"PositionOpenQuantity", "PositionPeriod/StartDate", "PositionOrganization/IndustryCode"} <= {
        p.field for p in result.problems if p.severity == "warning"
    }


@pytest.mark.needs_samples
@pytest.mark.parametrize(
    "name", ["nav_positionopening_ad_1", "nav_positionopening_ad_2", "nav_positionopening_ad_with_experience"]
)
def test_navs_real_vacancies_convert(adapter, name):
    (result,) = adapter.read(SAMPLES / "eures_hrxml" / f"{name}.xml")
    offer = result.record
    assert result.ok and offer.occupation.isco08_code == "7411" and offer.place.country_code == "NO"
    assert offer.employer.nace_code in ("C33.17", "F43.21")
    records.parse(PayloadKind.JOB_OFFER, offer.SerializeToString())
    assert adapter.round_trip(offer, "again") == offer
    if name.endswith("experience"):
        assert offer.required_experience_months == 12


@pytest.mark.needs_samples
def test_navs_test_candidate_is_refused_with_reasons_a_person_can_act_on(adapter):
    """NAV's synthetic CV has no residence country and no position sought or held."""
    (result,) = adapter.read(SAMPLES / "eures_hrxml" / "nav_candidate_testXml.xml")
    assert not result.ok
    errors = {p.field: p.reason for p in result.problems if p.severity == "error"}
    assert "no residence country" in errors["Address/Country"] and "no job applied for" in errors["Headline"]
    assert "Potet" not in str(result.problems)


def test_profiles_round_trip_whatever_the_writer_of_the_candidate(adapter):
    """A profile read from another format (here built by hand) survives HR-XML and back."""
    p = profile_pb2.CandidateProfile(residence_country_code="SN", summary="Maçon")
    p.header.record_id, p.header.origin_participant_id, p.header.version = "P-x", "sn-anpej", 1
    occupation = p.occupations.add(isco08_code="7112", title="Maçon")
    occupation.resolution.method = "title"
    p.languages.add(language_code="fr", level=4)
    p.desired_country_codes.append("FR")
    p.mobility_types.append(common_pb2.MOBILITY_TYPE_SEASONAL)
    assert adapter.round_trip(p, "x") == p
