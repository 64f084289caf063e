"""Matching: ranked, explained, consent-filtered, paginated and deterministic."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spehub.v1 import common_pb2, consent_pb2, exchange_pb2, offer_pb2, pool_pb2, profile_pb2

from hub.domain.records import PayloadKind
from hub.store import schema as t
from tests.support.matching import (
    FT,
    MA,
    ML,
    SE,
    SKILL,
    SN,
    add_experience,
    match_candidates,
    ok,
    profile_ids,
    publish_offer,
)
from tests.support.records import demo_consent, demo_offer, demo_profile


def _candidate(
    sn,
    name: str,
    isco: str = "7112",
    skills: tuple[str, ...] = (SKILL,),
    months: int = 24,
    french: int = common_pb2.CEFR_LEVEL_B2,
    destinations: tuple[str, ...] = ("FR", "ES"),
    mobility: tuple[int, ...] = (common_pb2.MOBILITY_TYPE_SEASONAL,),
    available_in_days: int = 0,
    countries: tuple[str, ...] = ("FR",),
    purposes: tuple[int, ...] = (consent_pb2.PURPOSE_POOL_SEARCH, consent_pb2.PURPOSE_MATCHING),
):
    """Publish a consent and a profile for one candidate; returns the profile record id."""
    now = sn.clock()
    consent = demo_consent(sn.id, f"c-{name}", 1, now, recipient_countries=countries)
    del consent.purposes[:]
    for purpose in purposes:
        consent.purposes.add(purpose=purpose, notice_version="2026-01", notice_language_code="fr")
    profile = demo_profile(sn.id, f"p-{name}", f"c-{name}", 1, now, isco=isco)
    del profile.skills[:]
    profile.skills.extend(common_pb2.Skill(label=s) for s in skills)
    profile.languages[1].level = french
    profile.desired_country_codes[:] = list(destinations)
    profile.mobility_types[:] = list(mobility)
    start = now.date() + timedelta(days=available_in_days)
    profile.available_from.CopyFrom(common_pb2.Date(year=start.year, month=start.month, day=start.day))
    add_experience(profile, now, months)
    ok(
        sn.publish_one_batch(
            [sn.seal(consent, PayloadKind.CONSENT), sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
        )
    )
    return f"p-{name}"


@pytest.fixture
def pool(hub, connect):
    """Candidates a counsellor would rank at a glance, and the ones that must not appear."""
    sn, ft = connect(SN), connect(FT)
    publish_offer(ft)
    for name, kwargs in (
        ("exact", {}),  # same unit group, the skill, two years: the best
        ("minor", {"isco": "7114"}),  # same minor group (711), otherwise equal
        ("sub-major", {"isco": "7121"}),  # same sub-major group (71) only
        ("no-experience", {"months": 0}),
        ("no-skill", {"skills": ()}),
        ("no-skill-2", {"skills": ()}),  # ties with no-skill: published later, listed later
        # Hard constraints: none of these may appear.
        ("other-group", {"isco": "9211"}),
        ("weak-french", {"french": common_pb2.CEFR_LEVEL_A1}),
        ("only-spain", {"destinations": ("ES",)}),
        ("only-permanent", {"mobility": (common_pb2.MOBILITY_TYPE_PERMANENT,)}),
        ("too-late", {"available_in_days": 90}),
        ("not-for-france", {"countries": ("SE",)}),
        ("search-only", {"purposes": (consent_pb2.PURPOSE_POOL_SEARCH,)}),
    ):
        _candidate(sn, name, **kwargs)
    return sn, ft


def test_candidates_are_ranked_as_a_counsellor_expects(pool, hub):
    _, ft = pool
    response = match_candidates(ft)
    assert profile_ids(response) == [
        "p-exact",
        "p-minor",
        "p-no-experience",
        "p-sub-major",
        "p-no-skill",
        "p-no-skill-2",
    ]
    scores = {i: c.match.score for i, c in zip(profile_ids(response), response.candidates, strict=True)}
    assert scores == {
        "p-exact": 1000,  # 500 occupation + 300 skills + 200 experience
        "p-minor": 850,
        "p-no-experience": 800,
        "p-sub-major": 700,
        "p-no-skill": 700,
        "p-no-skill-2": 700,
    }
    best = response.candidates[0].match
    assert best.occupation_fit == pool_pb2.OCCUPATION_FIT_SAME_UNIT_GROUP
    assert list(best.skills_in_common) == [SKILL] and not best.skills_missing
    assert [(f.language_code, f.required, f.held) for f in best.languages] == [
        ("fr", common_pb2.CEFR_LEVEL_A2, common_pb2.CEFR_LEVEL_B2)
    ]
    assert best.destination_wanted and best.mobility_type_wanted and best.available_in_time
    assert (best.experience_months, best.required_experience_months) == (24, 12)
    assert best.explanations[0] == "Occupation: same ISCO-08 unit group as the offer (7112)."
    assert "Language fr: B2 held, A2 required." in best.explanations
    no_skill = response.candidates[4].match
    assert (
        list(no_skill.skills_missing) == [SKILL] and "missing pose de parpaings" in no_skill.explanations[1]
    )
    # Each candidate shown is a disclosure in the audit log, under the candidate's consent.
    with hub.store.unit_of_work() as uow:
        rows = uow.conn.execute(t.audit_log.select().where(t.audit_log.c.action == "disclose.match")).all()
    assert sorted(r.record_id for r in rows) == sorted(profile_ids(response))
    assert {r.purpose for r in rows} == {"matching"} and {r.actor for r in rows} == {FT}


def test_pages_are_stable_and_complete(pool):
    _, ft = pool
    everything = profile_ids(match_candidates(ft))
    seen, token = [], ""
    for _ in range(10):
        page = match_candidates(ft, page_size=4, page_token=token)
        seen += profile_ids(page)
        token = page.next_page_token
        if not token:
            break
    assert seen == everything
    assert profile_ids(match_candidates(ft)) == everything  # the same order every time
    with pytest.raises(grpc.RpcError) as err:
        match_candidates(ft, page_token="bm90LWEtdG9rZW4")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_withdrawn_consent_removes_the_candidate_at_once(pool):
    sn, ft = pool
    assert "p-exact" in profile_ids(match_candidates(ft))
    withdrawn = demo_consent(SN, "c-exact", 2, sn.clock(), recipient_countries=("FR",))
    withdrawn.status = consent_pb2.CONSENT_STATUS_WITHDRAWN
    ok(sn.publish_one_batch([sn.seal(withdrawn, PayloadKind.CONSENT)]))
    assert "p-exact" not in profile_ids(match_candidates(ft))


def test_only_the_offers_origin_or_its_target_spes_may_match_it(pool, connect):
    sn, _ = pool
    # An origin SPE the offer is addressed to ranks its own candidates (no disclosure to anyone).
    # Its consents need not name France Travail: nothing leaves the SPE.
    assert profile_ids(match_candidates(sn, origin=FT))[:3] == ["p-exact", "p-not-for-france", "p-minor"]
    assert (
        profile_ids(match_candidates(connect(ML), origin=FT)) == []
    )  # addressed to Mali too, but no Malian candidates
    for caller, origin in ((connect(MA), FT), (connect(SE), FT), (sn, "")):
        with pytest.raises(grpc.RpcError) as err:
            match_candidates(caller, origin=origin)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_offers_for_a_candidate_are_ranked_and_filtered(hub, connect):
    sn, ft, se = connect(SN), connect(FT), connect(SE)
    profile = _candidate(sn, "mason")
    publish_offer(ft, "o-exact")
    publish_offer(ft, "o-minor", isco="7114")
    publish_offer(ft, "o-farm", isco="9211")  # another occupation
    publish_offer(se, "o-sweden", work_country="SE")  # not among the candidate's destinations
    publish_offer(ft, "o-mali-only", targets=("ML",))  # addressed to Mali, not Senegal
    response = sn.pool.MatchOffers(pool_pb2.MatchOffersRequest(profile_record_id=profile), timeout=10)
    ids = [offer_pb2.JobOffer.FromString(o.offer.payload).header.record_id for o in response.offers]
    assert ids == ["o-exact", "o-minor"]
    assert [o.match.score for o in response.offers] == [1000, 850]
    with pytest.raises(grpc.RpcError) as err:
        connect(ML).pool.MatchOffers(pool_pb2.MatchOffersRequest(profile_record_id=profile), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # not its candidate


def test_a_profile_whose_consent_does_not_grant_matching_gets_no_offers(hub, connect):
    sn, ft = connect(SN), connect(FT)
    publish_offer(ft)
    profile = _candidate(sn, "search-only", purposes=(consent_pb2.PURPOSE_POOL_SEARCH,))
    with pytest.raises(grpc.RpcError) as err:
        sn.pool.MatchOffers(pool_pb2.MatchOffersRequest(profile_record_id=profile), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not grant matching" in err.value.details()


def test_partial_skills_and_experience_score_alike_in_sql_and_in_the_rules(hub, connect):
    """Two of three skills and 5 of 12 months: whole points rounded down, the same in the ranking query."""
    sn, ft = connect(SN), connect(FT)
    offer = demo_offer(FT, "o-partial", 1, ft.clock(), targets=("SN",))
    offer.occupation.isco08_code = "7112"
    offer.required_skills.add(label=SKILL)
    offer.required_skills.add(label="lire un plan")
    offer.required_skills.add(label="coffrage")
    offer.required_experience_months = 12
    ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))
    _candidate(sn, "partial", skills=(SKILL, "coffrage"), months=5)
    _candidate(sn, "full", skills=(SKILL, "coffrage", "lire un plan"), months=30)
    response = match_candidates(ft, "o-partial")
    assert profile_ids(response) == ["p-full", "p-partial"]
    partial = response.candidates[1].match
    assert partial.score == 500 + 300 * 2 // 3 + 200 * 5 // 12 == 783
    assert list(partial.skills_missing) == ["lire un plan"] and partial.experience_months == 5


def test_one_month_of_twelve_and_one_skill_of_seven_is_answered(hub, connect):
    """The attack: Python rounded (17 and 43 points) where SQL floor-divides (16 and 42); the
    disagreement made MatchCandidates INTERNAL for everybody matching the offer."""
    sn, ft = connect(SN), connect(FT)
    offer = demo_offer(FT, "o-seven", 1, ft.clock(), targets=("SN",))
    offer.occupation.isco08_code = "7112"
    for i in range(7):
        offer.required_skills.add(label=f"savoir {i}")
    offer.required_experience_months = 12
    ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))
    _candidate(sn, "one-of-seven", skills=("savoir 3",), months=1)
    response = match_candidates(ft, "o-seven")
    assert profile_ids(response) == ["p-one-of-seven"]
    assert response.candidates[0].match.score == 500 + 300 * 1 // 7 + 200 * 1 // 12 == 558


def test_a_disagreement_between_sql_and_the_rules_is_logged_and_answered(hub, connect, monkeypatch, caplog):
    """Should the two computations ever differ again, the rules decide and the call still answers."""
    from hub.domain import matching

    sn, ft = connect(SN), connect(FT)
    publish_offer(ft)
    _candidate(sn, "shifted")
    real = matching.experience_points
    monkeypatch.setattr(matching, "experience_points", lambda months, required: real(months, required) - 1)
    with caplog.at_level("ERROR", logger="spehub"):
        response = match_candidates(ft)
    assert profile_ids(response) == ["p-shifted"]
    assert response.candidates[0].match.score == 500 + 300 + 200 - 1
    assert "match disagreement" in caplog.text


SKILL_POOL = tuple(f"savoir-faire {i}" for i in range(7))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    required_skills=st.lists(st.sampled_from(SKILL_POOL), unique=True, max_size=7),
    required_months=st.integers(min_value=0, max_value=36),
    candidates=st.lists(
        st.tuples(st.lists(st.sampled_from(SKILL_POOL), unique=True, max_size=7), st.integers(0, 60)),
        min_size=1,
        max_size=4,
    ),
)
def test_sql_and_the_rules_give_the_same_score(
    hub, connect, caplog, required_skills, required_months, candidates
):
    """Over random offers and profiles, the score read back from the SQL ranking is the one the
    rules compute (the service logs any disagreement: none may happen)."""
    from hub.domain import matching

    global _EXAMPLE
    _EXAMPLE += 1
    sn, ft = connect(SN), connect(FT)
    offer_id = f"o-random-{_EXAMPLE}"
    offer = demo_offer(FT, offer_id, 1, ft.clock(), targets=("SN",))
    # A sub-major group of its own: earlier examples' candidates do not match this offer.
    offer.occupation.isco08_code = f"{10 + _EXAMPLE % 89:02d}11"
    for label in required_skills:
        offer.required_skills.add(label=label)
    offer.required_experience_months = required_months
    ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))
    expected = {}
    for i, (skills, months) in enumerate(candidates):
        name = f"r{_EXAMPLE}-{i}"
        _candidate(sn, name, isco=offer.occupation.isco08_code, skills=tuple(skills), months=months)
        held = len(set(skills) & set(required_skills))
        expected[f"p-{name}"] = (
            500
            + matching.skill_points(held, len(required_skills))
            + matching.experience_points(months, required_months)
        )
    with caplog.at_level("ERROR", logger="spehub"):
        response = match_candidates(ft, offer_id, page_size=10)
    got = {rid: c.match.score for rid, c in zip(profile_ids(response), response.candidates, strict=True)}
    assert got == expected
    assert "match disagreement" not in caplog.text


_EXAMPLE = 0


def test_a_profile_known_only_at_a_coarser_group_is_found_and_matched_for_what_it_says(hub, connect):
    """A title the resolver could settle only at sub-major group 61: a search for 61 finds it, one
    for 611 does not, and matching scores it as a sub-major fit and says why."""
    sn, ft = connect(SN), connect(FT)
    publish_offer(ft, isco="6111")
    now = sn.clock()
    consent = demo_consent(SN, "c-coarse", 1, now, recipient_countries=("FR",))
    profile = demo_profile(SN, "p-coarse", "c-coarse", 1, now, isco="61")
    profile.occupations[0].resolution.CopyFrom(
        common_pb2.OccupationResolution(
            method="title", decision=common_pb2.RESOLUTION_DECISION_ANCESTOR, score=0.66
        )
    )
    profile.languages[1].level = common_pb2.CEFR_LEVEL_B2
    profile.desired_country_codes[:] = ["FR"]
    profile.mobility_types[:] = [common_pb2.MOBILITY_TYPE_SEASONAL]
    ok(
        sn.publish_one_batch(
            [sn.seal(consent, PayloadKind.CONSENT), sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
        )
    )

    def found(prefix):
        hits = ft.pool.SearchProfiles(
            pool_pb2.SearchProfilesRequest(isco08_codes=[prefix]), timeout=10
        ).profiles
        return [profile_pb2.CandidateProfile.FromString(h.profile.payload).header.record_id for h in hits]

    assert found("61") == ["p-coarse"] and found("6") == ["p-coarse"]
    assert found("611") == [] and found("6111") == []
    response = match_candidates(ft)
    assert profile_ids(response) == ["p-coarse"]
    match = response.candidates[0].match
    assert match.occupation_fit == pool_pb2.OCCUPATION_FIT_SAME_SUB_MAJOR_GROUP
    assert (
        match.explanations[0]
        == "Occupation: known only at ISCO-08 group 61, the offer's ISCO-08 sub-major group (6111)."
    )


@pytest.mark.parametrize(
    ("isco", "decision", "field"),
    [
        ("61", common_pb2.RESOLUTION_DECISION_UNIT_GROUP, "occupations[0].resolution.decision"),
        ("6111", common_pb2.RESOLUTION_DECISION_ANCESTOR, "occupations[0].resolution.decision"),
        ("61111", 0, "occupations[0].isco08_code"),
        ("", 0, "occupations[0].isco08_code"),
    ],
)
def test_an_occupation_says_its_level_consistently(hub, connect, isco, decision, field):
    sn = connect(SN)
    profile = demo_profile(SN, "p-level", "c-level", 1, sn.clock(), isco=isco)
    profile.occupations[0].resolution.decision = decision
    (result,) = sn.publish_one_batch([sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)])
    assert result.outcome == exchange_pb2.RECORD_OUTCOME_REJECTED and result.field == field, result
