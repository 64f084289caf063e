"""Matching helpers the matching and ranking tests share: participants, an offer, the calls."""

from __future__ import annotations

from datetime import timedelta

from spehub.v1 import common_pb2, exchange_pb2, pool_pb2, profile_pb2

from hub.domain.records import PayloadKind
from tests.support.records import demo_consent, demo_offer, demo_profile

SN, MA, ML, FT, SE = "sn-anpej", "ma-anapec", "ml-anpe", "fr-francetravail", "se-arbetsformedlingen"
SKILL = "pose de parpaings"


def ok(results):
    outcomes = [exchange_pb2.RecordOutcome.Name(r.outcome) for r in results]
    assert outcomes == ["RECORD_OUTCOME_ACCEPTED"] * len(results), [(r.field, r.message) for r in results]


def publish_candidates(sn, n: int) -> None:
    """``n`` demo candidates of ``sn``, ``c-i`` consenting for ``p-i``, in one batch."""
    now = sn.clock()
    batch = []
    for i in range(n):
        batch.append(sn.seal(demo_consent(sn.id, f"c-{i}", 1, now), PayloadKind.CONSENT))
        batch.append(sn.seal(demo_profile(sn.id, f"p-{i}", f"c-{i}", 1, now), PayloadKind.CANDIDATE_PROFILE))
    ok(sn.publish_one_batch(batch))


def add_experience(profile, now, months: int) -> None:
    """``months`` of work experience in Senegal, ending with last month (none for 0)."""
    if months:
        end = now.date().replace(day=1) - timedelta(days=1)  # the end of last month
        first = (end.year * 12 + end.month - 1) - months + 1
        profile.work_experiences.add(
            country_code="SN",
            period=common_pb2.DateRange(
                start=common_pb2.Date(year=first // 12, month=first % 12 + 1, day=1),
                end=common_pb2.Date(year=end.year, month=end.month, day=end.day),
            ),
        )


def publish_offer(publisher, record_id="o-mason", isco="7112", work_country="FR", targets=("SN", "ML"), **kw):
    offer = demo_offer(publisher.id, record_id, 1, publisher.clock(), targets=targets)
    offer.occupation.isco08_code = isco
    offer.title = "Maçon saisonnier"
    offer.place.country_code = work_country
    offer.required_skills.add(label=SKILL)
    offer.required_experience_months = 12
    for key, value in kw.items():
        setattr(offer, key, value)
    ok(publisher.publish_one_batch([publisher.seal(offer, PayloadKind.JOB_OFFER)]))
    return record_id


def match_candidates(p, offer_id="o-mason", page_size=0, page_token="", origin=""):
    return p.pool.MatchCandidates(
        pool_pb2.MatchCandidatesRequest(
            offer_record_id=offer_id,
            page_size=page_size,
            page_token=page_token,
            offer_origin_participant_id=origin,
        ),
        timeout=10,
    )


def profile_ids(response):
    return [
        profile_pb2.CandidateProfile.FromString(c.profile.payload).header.record_id
        for c in response.candidates
    ]
