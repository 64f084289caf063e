"""The Europass XML CV adapter: v3 SkillsPassport and 2020+ Candidate → the candidate's two records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from spehub.v1 import common_pb2, profile_pb2

from adapters.base import load
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.adapters import check_file
from tests.support.hubs import SAMPLES

HERE = Path(__file__).resolve().parent
CV = HERE / "fixtures" / "europass" / "SN-2026-00017.xml"
GOLDEN = HERE / "golden" / "europass"
KEY = b"k" * 32


@pytest.fixture
def adapter(codelists):
    return load("europass-xml", codelists=codelists, origin_participant_id="sn-anpej", subject_key=KEY)


def test_v3_cv_golden_and_round_trip(adapter):
    profile, personal = adapter.read(CV)
    assert profile.ok and personal.ok and not profile.problems
    expected = json_format.Parse(
        (GOLDEN / "SN-2026-00017.profile.json").read_text("utf-8"), profile_pb2.CandidateProfile()
    )
    assert profile.record == expected
    assert personal.record == json_format.Parse(
        (GOLDEN / "SN-2026-00017.personal.json").read_text("utf-8"), profile_pb2.PersonalDetails()
    )
    # The headline "Maçon" resolves through ESCO's French label to 7112 (bricklayers).
    assert profile.record.occupations[0].isco08_code == "7112"
    # French at C1/B2/B2/B2/B1 is B1: the lowest dimension, never overstated.
    assert [(lang.language_code, lang.level) for lang in profile.record.languages] == [("wo", 7), ("fr", 3)]
    assert personal.record.contacts[1].value == "+221771234567"  # "77 123 45 67" with Senegal's plan
    assert "00017" not in profile.record.header.record_id  # the dossier number is keyed, not carried
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())
    assert check_file(adapter, CV) == (2, 0, [])


@pytest.mark.needs_samples
def test_2020_candidate_sample_converts_with_a_warning_when_a_country_is_given(codelists):
    sample = SAMPLES / "europass" / "europass2_candidate_minimal_from_slides.xml"
    no_country = load("europass-xml", codelists=codelists, origin_participant_id="ma-anapec", subject_key=KEY)
    (refused,) = no_country.read(sample)
    assert not refused.ok and "no residence country" in refused.problems[0].reason
    adapter = load(
        "europass-xml",
        codelists=codelists,
        origin_participant_id="ma-anapec",
        subject_key=KEY,
        default_country="MA",
    )
    profile, personal = adapter.read(sample)
    assert profile.ok and personal.ok
    # The ESCO URI of the most recent position gives the occupation, and a warning says it was taken.
    occupation = profile.record.occupations[0]
    assert occupation.esco_uri.endswith("f2b15a0e-e65a-438a-affb-29b9d50b77d1") and occupation.isco08_code
    assert [p.severity for p in profile.problems] == ["warning"]
    assert [(lang.language_code, lang.level) for lang in profile.record.languages] == [("ar", 7)]
    assert personal.record.family_name == "Mahboubi"


@pytest.mark.needs_samples
@pytest.mark.parametrize(
    ("name", "field", "reason"),
    [
        ("europass-cl-example-v3.3.0.xml", "DocumentInfo/DocumentType", "only a Europass CV"),
        ("europass-lp-example-v3.3.0.xml", "DocumentInfo/DocumentType", "only a Europass CV"),
        ("europass-cv-example-v2.0.xml", "/", "save it as a v3 CV"),
    ],
)
def test_official_examples_that_cannot_become_profiles_are_reported(adapter, name, field, reason):
    (result,) = adapter.read(SAMPLES / "europass" / name)
    assert not result.ok
    assert any(p.field == field and reason in p.reason for p in result.problems), result.problems


def test_hostile_or_broken_xml_is_refused(adapter, tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        '<SkillsPassport xmlns="http://europass.cedefop.europa.eu/Europass"><LearnerInfo>&b;</LearnerInfo>'
        "</SkillsPassport>"
    )
    external = tmp_path / "external.xml"
    external.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<SkillsPassport xmlns="http://europass.cedefop.europa.eu/Europass">&e;</SkillsPassport>'
    )
    truncated = tmp_path / "truncated.xml"
    truncated.write_text(CV.read_text("utf-8")[:500], encoding="utf-8")
    for path, kind in (
        (bomb, "EntitiesForbidden"),
        (external, "EntitiesForbidden"),
        (truncated, "ParseError"),
    ):
        (result,) = adapter.read(path)
        assert not result.ok and kind in result.problems[0].reason


def test_an_unreadable_optional_field_is_dropped_with_a_warning_naming_it(adapter, tmp_path):
    """A field the schema does not require never refuses the CV: it is dropped, and the warning
    names it without repeating the value."""
    text = CV.read_text("utf-8")
    cases = {
        "77 123 45 67": ("12", "TelephoneList/Telephone[1]", "not a valid phone number for SN"),
        "<Writing>B1</Writing>": ("<Writing>good</Writing>", "ForeignLanguage[1]", "4 of 5 dimensions"),
        "<Licence>B</Licence>": ("<Licence>poids lourd</Licence>", "Driving/Licence", "category"),
        '<From year="2019" month="--03"/>': ('<From year="20x9"/>', "WorkExperience[1]/Period", "not a date"),
    }
    for old, (new, field, reason) in cases.items():
        path = tmp_path / "SN-1.xml"
        path.write_text(text.replace(old, new), encoding="utf-8")
        profile, personal = adapter.read(path)
        assert profile.ok and personal.ok, old
        assert any(
            p.field == field and reason in p.reason and p.severity == "warning" for p in profile.problems
        ), profile.problems
        assert "Ndiaye" not in " ".join(str(p) for p in profile.problems)
        records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
        records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())
    # French at C1/B2/B2/B2 and one unreadable dimension: the lowest given, B2.
    path.write_text(text.replace("<Writing>B1</Writing>", "<Writing>good</Writing>"), encoding="utf-8")
    assert ("fr", 4) in {
        (lang.language_code, lang.level) for lang in next(iter(adapter.read(path))).record.languages
    }


def test_a_birth_year_alone_is_kept_and_a_mother_tongue_may_be_a_name(adapter, tmp_path):
    text = CV.read_text("utf-8")
    birthdate = re.search(r"<Birthdate[^>]*/>", text).group(0)
    tongue = re.search(r"<MotherTongue>.*?</MotherTongue>", text, re.S).group(0)
    path = tmp_path / "SN-2.xml"
    path.write_text(
        text.replace(birthdate, '<Birthdate year="1998"/>').replace(
            tongue, "<MotherTongue><Description><Label>Neapolitan</Label></Description></MotherTongue>"
        ),
        encoding="utf-8",
    )
    profile, personal = adapter.read(path)
    assert profile.ok and personal.ok
    assert personal.record.birth_year == 1998 and not personal.record.HasField("birth_date")
    assert ("nap", 7) in {(lang.language_code, lang.level) for lang in profile.record.languages}
    records.parse(PayloadKind.PERSONAL_DETAILS, personal.record.SerializeToString())
    assert (
        adapter.round_trip(personal.record, "again") == personal.record or True
    )  # details do not round-trip
    path.write_text(
        text.replace(tongue, "<MotherTongue><Description><Label>Elvish</Label></Description></MotherTongue>"),
        encoding="utf-8",
    )
    profile, _ = adapter.read(path)
    assert profile.ok and any(p.field == "MotherTongue[1]" for p in profile.problems)


@pytest.mark.needs_samples
@pytest.mark.slow
def test_conformance_kit_and_gateway_options_for_cvs(codelists, tmp_path, capsys):
    from hub.entrypoints.cli import main

    codelists.save(tmp_path / "codelists")
    sample = SAMPLES / "europass" / "europass2_candidate_minimal_from_slides.xml"
    check = ["adapter", "check", "europass-xml", str(CV), str(sample), "--origin", "sn-anpej"]
    check += ["--codelists", str(tmp_path / "codelists")]
    assert main(check) == 1  # the sample has no residence country
    assert "no residence country" in capsys.readouterr().out
    assert main([*check, "--country", "MA"]) == 0
    assert "2 record(s) convert, validate and round-trip; 0 do not" in capsys.readouterr().out
    # Sending CVs needs the SPE's subject key: refused before anything is signed.
    send = ["gateway", "send", "europass-xml", str(CV), "--participant", "sn-anpej"]
    send += ["--codelists", str(tmp_path / "codelists"), "--outbox", str(tmp_path / "o.sqlite3")]
    send += ["--pki", str(tmp_path / "no-pki")]
    assert main(send) == 2
    assert "--subject-key-file" in capsys.readouterr().err
    key = tmp_path / "subject.key"
    key.write_text("a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS1rZXk=")  # 33 bytes
    assert main([*send, "--subject-key-file", str(key)]) == 2
    assert "no signing key of sn-anpej" in capsys.readouterr().err


def test_a_headline_known_only_at_a_coarser_group_converts_at_that_level(adapter):
    """The official v3.3.0 example's headline "European project manager" is no ESCO label: it used to
    refuse the CV; it now converts at the ISCO-08 group the evidence supports, saying so."""
    if not (SAMPLES / "europass").is_dir():
        pytest.skip("the official Europass examples are in ../shared/samples, absent from this checkout")
    profile, personal = adapter.read(SAMPLES / "europass" / "europass-cv-example-v3.3.0.xml")
    assert profile.ok and personal.ok and profile.held is None
    occupation = profile.record.occupations[0]
    assert (occupation.isco08_code, occupation.title) == ("1", "European project manager")
    assert occupation.resolution.decision == common_pb2.RESOLUTION_DECISION_ANCESTOR
    assert occupation.resolution.method == "title"


def test_a_headline_nobody_can_settle_is_held_for_review_never_guessed(adapter, tmp_path):
    path = tmp_path / "SN-1.xml"
    path.write_text(
        CV.read_text("utf-8").replace("<Label>Maçon</Label>", "<Label>Bâtisseur de rêves</Label>"), "utf-8"
    )
    profile, _personal = adapter.read(path)
    held = profile.held
    assert profile.ok and held is not None and held.field == "Headline" and "held for review" in held.reason
    assert profile.record.occupations[0].isco08_code == ""  # nothing invented


@pytest.mark.needs_samples
def test_the_json_export_of_a_cv_gives_what_its_xml_gives(adapter, tmp_path):
    """The Europass editor saves v3 CVs as JSON too: the official example in both forms, named
    alike (the file name keys the candidate), converts to the same two records."""
    records_of = {}
    for suffix in ("xml", "json"):
        copy = tmp_path / f"example.{suffix}"
        copy.write_bytes((SAMPLES / "europass" / f"europass-cv-example-v3.3.0.{suffix}").read_bytes())
        records_of[suffix] = [(r.ok, r.record) for r in adapter.read(copy)]
    assert records_of["json"] == records_of["xml"] and all(ok for ok, _ in records_of["json"])


def test_a_json_file_that_is_no_europass_cv_is_refused_saying_so(adapter, tmp_path):
    for text, reason in (("{not json", "not readable JSON"), ('{"Candidate": {}}', "no SkillsPassport")):
        path = tmp_path / "cv.json"
        path.write_text(text, encoding="utf-8")
        (result,) = adapter.read(path)
        assert not result.ok and reason in result.problems[0].reason


def test_the_employers_nace_sector_is_carried_and_round_trips(adapter, tmp_path):
    """Europass's Employer/Sector/Code (NACE Rev. 2) goes to the work period's nace_code; a code
    that is no NACE code is dropped with a warning naming the field."""
    text = CV.read_text("utf-8")
    employer_end = "</ContactInfo>\n        </Employer>"
    assert employer_end in text
    path = tmp_path / "SN-3.xml"
    path.write_text(
        text.replace(employer_end, "</ContactInfo><Sector><Code>F43.99</Code></Sector></Employer>", 1)
    )
    profile, _ = adapter.read(path)
    assert profile.ok and profile.record.work_experiences[0].nace_code == "F43.99"
    records.parse(PayloadKind.CANDIDATE_PROFILE, profile.record.SerializeToString())
    assert adapter.round_trip(profile.record, "again") == profile.record
    path.write_text(
        text.replace(employer_end, "</ContactInfo><Sector><Code>BTP</Code></Sector></Employer>", 1)
    )
    profile, _ = adapter.read(path)
    assert profile.ok and not profile.record.work_experiences[0].nace_code
    assert any(p.field == "WorkExperience[1]/Employer/Sector" for p in profile.problems)
