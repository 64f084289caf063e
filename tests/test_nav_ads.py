"""NAV's national vacancy JSON (pam-ad) → JobOffer and back (issue 16: every sample gets in or is
refused with a reason a person can act on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spehub.v1 import offer_pb2

from adapters.base import load
from hub.domain import records
from hub.domain.records import PayloadKind
from hub.entrypoints.adapters import check_file
from tests.support.hubs import SAMPLES

AD = Path(__file__).resolve().parent / "fixtures" / "nav" / "ad_seasonal.json"


@pytest.fixture
def adapter(codelists):
    return load("nav-ads", codelists=codelists, origin_participant_id="no-nav", target_country_codes=("SN",))


def test_an_ad_becomes_an_offer_coded_by_its_styrk_category(adapter):
    (result,) = adapter.read(AD)
    offer = result.record
    assert result.ok and isinstance(offer, offer_pb2.JobOffer)
    occupation = offer.occupation
    # STYRK-08 is ISCO-08 at four digits; the national code is kept.
    assert (occupation.isco08_code, occupation.national_code.system, occupation.national_code.code) == (
        "9211",
        "STYRK08NAV",
        "9211.02",
    )
    assert (offer.employer.nace_code, offer.employer.registration_id) == ("A01.25", "999888777")
    assert (offer.place.country_code, offer.positions) == ("NO", 25)
    assert offer.contract.type == offer_pb2.CONTRACT_TYPE_SEASONAL
    assert (offer.contract.start_date.month, offer.application_deadline.day) == (6, 30)
    # "2026-11-12T09:15:30.250" is Oslo time (UTC+1 in November).
    assert offer.header.updated_at.ToJsonString() == "2026-11-12T08:15:30.250Z"
    # The employer's contact persons are never carried.
    assert "kontakt@example.no" not in str(offer) and "Test Kontakt" not in str(offer)
    records.parse(PayloadKind.JOB_OFFER, offer.SerializeToString())
    assert adapter.round_trip(offer, "again") == offer
    assert check_file(adapter, AD)[:2] == (1, 0)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"status": "INACTIVE"}, "status", "only an ACTIVE ad is published"),
        ({"properties": {"engagementtype": "Annet", "jobtitle": "x"}}, "properties.engagementtype", "Annet"),
        (
            {"categoryList": [{"categoryType": "STYRK08NAV", "code": "0000.01"}]},
            "categoryList",
            "not an ISCO-08",
        ),
        ({"uuid": "../etc"}, "uuid", "not an ad id"),
    ],
)
def test_an_ad_that_cannot_be_an_offer_is_refused_with_the_reason(adapter, tmp_path, change, field, reason):
    ad = {**json.loads(AD.read_text(encoding="utf-8")), **change}
    path = tmp_path / "ad.json"
    path.write_text(json.dumps(ad), encoding="utf-8")
    (result,) = adapter.read(path)
    assert not result.ok and any(p.field == field and reason in p.reason for p in result.problems)


@pytest.mark.needs_samples
def test_navs_real_ads_are_refused_as_inactive_and_read_when_active(adapter, tmp_path):
    """Both published ads are INACTIVE in NAV's data: refused, saying so. Made ACTIVE, the first
    converts to what NAV's own EURES export of it says (7411, NACE C33.17, start 1 March 2019);
    the second's engagement type "Annet" (other) has no common meaning and is refused."""
    first, second = (SAMPLES / "nav_national" / f"nav_pam_ad_{n}.json" for n in (1, 2))
    for path in (first, second):
        (result,) = adapter.read(path)
        assert not result.ok and any(p.field == "status" for p in result.problems)
    active = tmp_path / "active.json"
    active.write_text(json.dumps({**json.loads(first.read_text(encoding="utf-8")), "status": "ACTIVE"}))
    (result,) = adapter.read(active)
    offer = result.record
    assert result.ok and offer.occupation.isco08_code == "7411" and offer.employer.nace_code == "C33.17"
    assert (offer.contract.start_date.year, offer.contract.start_date.month) == (2019, 3)
    assert adapter.round_trip(offer, "again") == offer
