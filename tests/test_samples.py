"""Every real-format sample in ../shared/samples gets in, or is refused with a reason a person can
act on (issue 16). A sample added there without a line here fails the first test."""

from __future__ import annotations

import pytest

from adapters.base import load
from tests.support.hubs import SAMPLES

KEY = b"k" * 32
# file → (adapter, the reasons of its refused records; () when every record converts)
EXPECTED = {
    "eures_hrxml/nav_positionopening_ad_1.xml": ("eures-hrxml", ()),
    "eures_hrxml/nav_positionopening_ad_2.xml": ("eures-hrxml", ()),
    "eures_hrxml/nav_positionopening_ad_with_experience.xml": ("eures-hrxml", ()),
    "eures_hrxml/nav_candidate_testXml.xml": ("eures-hrxml", ("no job applied for",)),
    "europass/europass-cv-example-v3.3.0.xml": ("europass-xml", ()),
    "europass/europass-cv-example-v3.3.0.json": ("europass-xml", ()),
    "europass/europass2_candidate_minimal_from_slides.xml": ("europass-xml", ()),
    "europass/europass-cl-example-v3.3.0.xml": (
        "europass-xml",
        ("only a Europass CV (ECV) holds a profile",),
    ),
    "europass/europass-lp-example-v3.3.0.xml": (
        "europass-xml",
        ("only a Europass CV (ECV) holds a profile",),
    ),
    "europass/europass-cv-example-v2.0.xml": ("europass-xml", ("save it as a v3 CV",)),
    "france_travail/ft_offer_167ZKWX_2024.json": ("france-travail-offers", ()),
    "france_travail/ft_offers_4369834_4162319_pass-emploi-mock.json": ("france-travail-offers", ()),
    "france_travail/ft_search_response_doc_example_048KLTP.json": ("france-travail-offers", ()),
    # JazzHR's documentation examples hold the word "string" where codes belong.
    "hropen_json/jazzhr_hropen_candidate_example.json": (
        "eures-hropen",
        ("no occupation code and no job title",),
    ),
    "hropen_json/jazzhr_hropen_candidate_export.sample.json": (
        "eures-hropen",
        ("no occupation code and no job title",),
    ),
    "hropen_json/jazzhr_hropen_position_openings_example.json": (
        "eures-hropen",
        ("missing or not an ISO 8601 date", "no occupation code and no job title", "not ISO 3166-1 alpha-2"),
    ),
    "jobtech/af_legacy_source_ads_testannonser.json": ("jobtech-ads", ("send the JobSearch form of it",)),
    "jobtech/elastic_importers_expected_after_conversion.es.json": ("jobtech-ads", ()),
    "jobtech/jobsearch_ad_22884504_elastic-importers_converted.json": ("jobtech-ads", ()),
    "jobtech/jobsearch_ad_23174210_sokannonser_testdata.json": ("jobtech-ads", ()),
    "jobtech/jobsearch_ad_23187561_sokannonser_testdata.json": ("jobtech-ads", ()),
    "jobtech/sokannonser_platsannons_results_eng.es.json": ("jobtech-ads", ()),
    # Both ads are INACTIVE in NAV's data (tests/test_nav_ads.py reads the first made ACTIVE).
    "nav_national/nav_pam_ad_1.json": ("nav-ads", ("only an ACTIVE ad is published",)),
    "nav_national/nav_pam_ad_2.json": ("nav-ads", ("only an ACTIVE ad is published", "Annet")),
}


@pytest.mark.needs_samples
def test_every_sample_has_its_expected_outcome_here():
    files = {
        p.relative_to(SAMPLES).as_posix()
        for p in SAMPLES.rglob("*")
        if p.is_file() and p.parent.name != "crosswalks" and p.name != "PROVENANCE.md"
    }
    assert files == set(EXPECTED)


@pytest.mark.needs_samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_converts_or_is_refused_with_its_reasons(codelists, name):
    adapter_name, reasons = EXPECTED[name]
    adapter = load(
        adapter_name,
        codelists=codelists,
        origin_participant_id="eu-eures",
        target_country_codes=("SN",),
        subject_key=KEY,
        default_country="FR",
    )
    results = list(adapter.read(SAMPLES / name))
    assert results
    refused = [p.reason for r in results if not r.ok for p in r.problems if p.severity == "error"]
    if not reasons:
        assert all(r.ok for r in results), refused
        assert all(adapter.round_trip(r.record, "again") is not None for r in results if r.record is not None)
    else:
        assert refused and all(any(reason in text for text in refused) for reason in reasons), refused
