"""Kept match rankings: a match answered from an offer's kept ranking is the match the full query gives,
whatever happened to the pool since the ranking was computed."""

from __future__ import annotations

import threading
import time

import pytest
from spehub.v1 import common_pb2, consent_pb2, exchange_pb2, offer_pb2
from sqlalchemy import event, select

from hub.clock import to_us
from hub.domain import matching
from hub.domain.records import PayloadKind
from hub.domain.stored import Audience
from hub.services.matching import MATCHING_BIT, Rankings
from hub.store import schema as t
from hub.store.matching import MatchingQueries
from hub.store.sql import RANKING_LOCK
from tests.support.hubs import make_participant, started_hub
from tests.support.matching import (
    FT,
    ML,
    SKILL,
    SN,
    add_experience,
    match_candidates,
    ok,
    profile_ids,
    publish_offer,
)
from tests.support.records import demo_consent, demo_offer, demo_profile

OFFER = PayloadKind.JOB_OFFER.payload_type
PROFILE = PayloadKind.CANDIDATE_PROFILE.payload_type
ACTIVE, PAUSED = consent_pb2.CONSENT_STATUS_ACTIVE, consent_pb2.CONSENT_STATUS_PAUSED
SECOND = "pose de carrelage"


def _publish(
    sn,
    name,
    version=1,
    isco="7112",
    skills=(SKILL,),
    months=24,
    status=ACTIVE,
    countries=("FR",),
    **consent_kw,
):
    """A candidate's consent and profile, at ``version`` (both records)."""
    now = sn.clock()
    consent = demo_consent(sn.id, f"c-{name}", version, now, recipient_countries=countries)
    consent.status = status
    for key, value in consent_kw.items():
        setattr(consent, key, value)
    profile = demo_profile(sn.id, f"p-{name}", f"c-{name}", version, now, isco=isco)
    del profile.skills[:]
    profile.skills.extend(common_pb2.Skill(label=s) for s in skills)
    profile.desired_country_codes[:] = ["FR"]
    profile.mobility_types[:] = [common_pb2.MOBILITY_TYPE_SEASONAL]
    del profile.work_experiences[:]
    add_experience(profile, now, months)
    ok(
        sn.publish_one_batch(
            [sn.seal(consent, PayloadKind.CONSENT), sn.seal(profile, PayloadKind.CANDIDATE_PROFILE)]
        )
    )


def _two_skill_offer(ft):
    offer = demo_offer(ft.id, "o-mason", 1, ft.clock(), targets=("SN",))
    offer.occupation.isco08_code = "7112"
    offer.place.country_code = "FR"
    offer.required_skills.add(label=SKILL)
    offer.required_skills.add(label=SECOND)
    offer.required_experience_months = 24
    ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))


# Scores from 200 to 1000 with ties: three occupation levels, 0-2 skills, 0-24 months.
VARIED = [
    (isco, skills, months)
    for isco in ("7112", "7114", "7121")
    for skills in ((SKILL, SECOND), (SKILL,), ())
    for months in (24, 12, 0)
]


@pytest.fixture
def pool(hub, connect):
    sn, ft = connect(SN), connect(FT)
    _two_skill_offer(ft)
    for i, (isco, skills, months) in enumerate(VARIED):
        _publish(sn, f"v{i}", isco=isco, skills=skills, months=months)
    # Among the best by their facts, so kept; never shown to France Travail, never to Senegal's own.
    _publish(sn, "for-sweden-only", skills=(SKILL, SECOND), countries=("SE",))
    _publish(connect(ML), "malian", skills=(SKILL, SECOND))
    return sn, ft


def _offer_facts(uow):
    pk, envelope, _ = uow.records.current(FT, OFFER, "o-mason")
    return matching.offer_facts(pk, offer_pb2.JobOffer.FromString(envelope.payload))


def _compare(hub, clock, limits=(1, 2, 5)) -> tuple[list[tuple[int, int]], int]:
    """Every page (each position, each size) from the kept ranking, against the full query, for
    France Travail and for the origin SPE's own candidates. Returns (the full ranking, pages the
    kept ranking answered)."""
    served = 0
    with hub.store.unit_of_work() as uow:
        offer = _offer_facts(uow)
        state = uow.matching.ranking_state(offer.pk)
        assert state is not None
        now = to_us(clock())
        for audience, own in (
            (Audience(FT, "FR", MATCHING_BIT, ACTIVE, now), None),
            (
                Audience(SN, "SN", MATCHING_BIT, ACTIVE, now),
                SN,
            ),
        ):
            full = [
                (row[0].pk, row[4]) for row in uow.matching.candidates(audience, own, offer, None, 10_000)
            ]
            for i, after in enumerate([None, *((s, pk) for pk, s in full)]):
                for limit in limits:
                    ranked = uow.matching.ranked_candidates(audience, own, offer, state, after, limit)
                    if ranked is not None:
                        assert [(row[0].pk, row[4]) for row in ranked] == full[i : i + limit], (after, limit)
                        served += 1
            # The first page always comes from the ranking when the best are kept and consented.
            if own is None:
                reference = full
    return reference, served


def _rank(hub, clock, keep=6):
    with hub.store.unit_of_work() as uow:
        pk = _offer_facts(uow).pk
    assert Rankings(hub.store, clock, keep=keep).rank(pk)


def test_a_kept_ranking_answers_as_the_full_query(pool, hub, clock):
    _rank(hub, clock)
    full, served = _compare(hub, clock)
    assert len(full) == len(VARIED) + 1 and full[0][1] == 1000 and full[-1][1] == 200
    # With six kept, pages inside the best six come from the ranking; the others from the full query.
    assert served >= 6
    with hub.store.unit_of_work() as uow:
        state = uow.matching.ranking_state(_offer_facts(uow).pk)
        mr = t.match_rankings.c
        kept = list(
            uow.conn.execute(select(-mr.minus_score, mr.profile_pk).order_by(mr.minus_score, mr.profile_pk))
        )
    # Kept consent aside: the candidate for Sweden only and the Malian one are among the six.
    assert len(kept) == 6 and state.boundary == tuple(kept[-1])
    assert {pk for _, pk in kept} - {pk for pk, _ in full}


def _scored_pages(uow, offer, audience, own, limits):
    """Every page (each position, each size) as ``candidates`` answers it, next to the page the
    scoring query gives; and how many the top-score path answered alone."""
    consented = uow.matching._consented(audience, own)
    full = [
        (row[0], row[4]) for row in uow.conn.execute(uow.matching._scored(offer, consented, None, 10_000))
    ]
    pages, fast = [], 0
    for i, after in enumerate([None, *((s, pk) for pk, s in full)]):
        for limit in limits:
            got = [(row[0].pk, row[4]) for row in uow.matching.candidates(audience, own, offer, after, limit)]
            pages.append((got, full[i : i + limit], (after, limit)))
            fast += uow.matching._best_first(offer, consented, after, limit) is not None
    return full, pages, fast


@pytest.mark.parametrize("window", [5000, 1])
def test_top_score_candidates_found_without_scoring_are_the_pages_scoring_gives(
    pool, hub, clock, monkeypatch, window
):
    """A page of only top-score candidates (1000 here: the offer's unit group, both skills, 24
    months; two for each audience) is read in record order without scoring the group; every page, first or later, equals
    the one scoring gives, and a window too small to prove a page leaves it to scoring."""
    monkeypatch.setattr("hub.store.matching.WINDOW", window)
    now = to_us(clock())
    with hub.store.unit_of_work() as uow:
        offer = _offer_facts(uow)
        for audience, own in (
            (Audience(FT, "FR", MATCHING_BIT, ACTIVE, now), None),
            (Audience(SN, "SN", MATCHING_BIT, ACTIVE, now), SN),
        ):
            full, pages, fast = _scored_pages(uow, offer, audience, own, (1, 2, 3, 5))
            assert [s for _, s in full[:2]] == [1000, 1000] and full[2][1] < 1000
            for got, expected, where in pages:
                assert got == expected, where
            # The first page of 1 or 2 and the page of 1 after the first; a window of one row
            # cannot prove a page of two.
            assert (fast == 3) if window > 1 else (0 < fast < 3)
        # Ranking takes the same path, consent aside: its kept rows are the scoring query's.
        rows = uow.matching.rank_offer(offer, 1, 2)[1]
        scored = uow.conn.execute(uow.matching._scored(offer, [], None, 2))
        assert rows == [(row[0], row[4]) for row in scored]


@pytest.mark.slow
def test_a_kept_ranking_stays_exact_as_the_pool_changes(pool, hub, clock):
    sn, ft = pool
    _rank(hub, clock)
    full, _ = _compare(hub, clock)

    def names() -> dict[int, str]:
        with hub.store.unit_of_work() as uow:
            r = t.records.c
            return {
                pk: rid.removeprefix("p-")
                for pk, rid in uow.conn.execute(select(r.id, r.record_id).where(r.payload_type == PROFILE))
            }

    def kept() -> set[int]:
        with hub.store.unit_of_work() as uow:
            return set(uow.conn.execute(select(t.match_rankings.c.profile_pk)).scalars())

    def changed() -> None:
        clock.advance(minutes=1)
        _, served = _compare(hub, clock)
        assert served > 0, "the kept ranking answered nothing"

    name = names()
    senegal = [pk for pk, _ in full if name[pk].startswith("v")]  # those Senegal's SPE can change
    best = senegal[:3]
    # A new candidate better than any kept: scored from the profiles published since.
    _publish(sn, "newcomer", isco="7112", skills=(SKILL, SECOND), months=36)
    changed()
    assert profile_ids(match_candidates(ft, "o-mason", page_size=1)) == ["p-v0"]  # equal scores: by record
    # The best kept candidate republished with less: its kept score no longer counts.
    _publish(sn, name[best[0]], version=2, isco="7121", skills=(), months=0)
    changed()
    # Consent paused, then active again: out, then back, without a new ranking.
    _publish(sn, name[best[1]], version=2, status=PAUSED)
    changed()
    assert f"p-{name[best[1]]}" not in profile_ids(match_candidates(ft, "o-mason", page_size=100))
    _publish(sn, name[best[1]], version=3)
    changed()
    assert f"p-{name[best[1]]}" in profile_ids(match_candidates(ft, "o-mason", page_size=100))
    # Withdrawn by its origin.
    sn.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=PROFILE, record_id=f"p-{name[best[2]]}"),
        timeout=10,
    )
    changed()
    # Erased: the profile leaves the kept ranking too (pk and score are about the candidate).
    erased = min((kept() & set(senegal)) - set(best), key=senegal.index)
    _publish(sn, name[erased], version=2, status=consent_pb2.CONSENT_STATUS_WITHDRAWN, erasure_requested=True)
    changed()
    assert erased not in kept()
    # Ranked again: the same pages.
    before = _compare(hub, clock)[0]
    _rank(hub, clock)
    assert _compare(hub, clock)[0] == before


def test_matches_over_grpc_come_from_the_ranking_once_kept(pool, hub, clock, monkeypatch):
    _, ft = pool
    cold = match_candidates(ft, "o-mason", page_size=5)
    assert hub.rankings is not None and hub.rankings.rank_pending() == 1
    full_query = []
    original = MatchingQueries.candidates

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        full_query.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MatchingQueries, "candidates", spy)
    warm = match_candidates(ft, "o-mason", page_size=5)
    assert profile_ids(warm) == profile_ids(cold) and [c.match for c in warm.candidates] == [
        c.match for c in cold.candidates
    ]
    assert full_query == []
    # The next page is the same too; past the 500 kept it would fall back to the full query.
    assert (
        profile_ids(match_candidates(ft, "o-mason", page_size=5, page_token=warm.next_page_token))
        == profile_ids(match_candidates(ft, "o-mason", page_size=100))[5:10]
    )


def test_a_stale_ranking_is_not_used_and_is_ranked_again(pool, hub, clock):
    sn, ft = pool
    rankings = Rankings(hub.store, clock, keep=6, fresh_within=5)
    assert rankings.rank_pending() == 1 and rankings.rank_pending() == 0
    with hub.store.unit_of_work() as uow:
        pk = _offer_facts(uow).pk
        state = uow.matching.ranking_state(pk)
        revision = uow.records.indexed_offer_revision(pk)
        assert rankings.usable(state, revision, uow.records.newest_envelope())
    # More publications than fresh_within: stale.
    for i in range(3):
        _publish(sn, f"late{i}")
    with hub.store.unit_of_work() as uow:
        assert not rankings.usable(state, revision, uow.records.newest_envelope())
    assert rankings.rank_pending() == 1
    # A new version of the offer: the old ranking does not answer for it.
    clock.advance(minutes=1)
    offer = demo_offer(ft.id, "o-mason", 2, ft.clock(), targets=("SN",))
    offer.occupation.isco08_code = "7121"
    offer.place.country_code = "FR"
    ok(ft.publish_one_batch([ft.seal(offer, PayloadKind.JOB_OFFER)]))
    with hub.store.unit_of_work() as uow:
        assert uow.matching.ranking_state(pk) is None  # dropped with the old version's index rows
    assert rankings.rank_pending() == 1
    # Withdrawn: nothing to rank, and its ranking goes.
    ft.exchange.WithdrawRecord(
        exchange_pb2.WithdrawRecordRequest(payload_type=OFFER, record_id="o-mason"), timeout=10
    )
    with hub.store.unit_of_work() as uow:
        assert uow.matching.ranking_state(pk) is None
        assert uow.conn.execute(t.match_rankings.select()).first() is None
    assert rankings.rank_pending() == 0 and not rankings.rank(pk)


def _kept_rows(hub) -> dict[int, tuple[int, str]]:
    """The kept ranking's rows: profile pk -> (minus score, the row's physical identity)."""
    row_id = "rowid" if hub.store.is_sqlite else "ctid::text"
    with hub.store.unit_of_work() as uow:
        rows = uow.conn.exec_driver_sql(
            f"SELECT profile_pk, minus_score, {row_id} FROM match_rankings"  # noqa: S608 (a constant)
        ).all()
    assert len(rows) == len({pk for pk, _, _ in rows}), "a candidate kept twice"
    return {pk: (minus, str(ident)) for pk, minus, ident in rows}


def test_ranking_again_writes_only_what_changed(pool, hub, clock):
    """An offer is ranked again whenever enough profiles arrive; its candidates that kept their
    place and score are not written again (each rewrite is a dead row until a VACUUM)."""
    sn, _ = pool
    _rank(hub, clock)
    before = _kept_rows(hub)
    _publish(sn, "newcomer", isco="7112", skills=(SKILL, SECOND), months=36)
    clock.advance(minutes=1)
    _rank(hub, clock)
    after = _kept_rows(hub)
    _, served = _compare(hub, clock)  # every page it answers is the full query's
    assert served > 0 and len(after) == 6
    stayed = set(before) & set(after)
    assert len(stayed) == 5  # the newcomer came in, the sixth went out
    assert all(after[pk] == before[pk] for pk in stayed)  # same score, same physical row


def test_postgresql_two_processes_saving_a_ranking_take_turns(pool, hub, clock, database_url):
    """A second hub process saving the same ranking meanwhile waits for the first, then finds it
    kept and writes nothing (without the lock, both would insert the same new candidates)."""
    if hub.store.is_sqlite:
        pytest.skip("SQLite has one writer at a time")
    from hub.store.engine import Store

    _rank(hub, clock)
    sn, _ = pool
    _publish(sn, "newcomer", isco="7112", skills=(SKILL, SECOND), months=36)
    with hub.store.unit_of_work() as uow:
        offer = _offer_facts(uow)
        revision = uow.records.indexed_offer_revision(offer.pk)
        assert revision is not None
        state, rows = uow.matching.rank_offer(offer, revision, 6)
    other = Store(database_url)
    results: list[bool] = []
    try:
        with hub.store.unit_of_work(write=True) as first:
            assert first.matching.save_ranking(offer.pk, state, rows, to_us(clock()))

            def second() -> None:
                with other.unit_of_work(write=True) as uow:
                    results.append(uow.matching.save_ranking(offer.pk, state, rows, to_us(clock())))
                    uow.commit()

            waiter = threading.Thread(target=second, name="second-process", daemon=True)
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive() and results == []  # waiting on the first one's lock
            first.commit()
        waiter.join(10)
        assert results == [False]
    finally:
        other.close()
    assert len(_kept_rows(hub)) == 6


def test_closed_offers_are_not_ranked(hub, connect, clock):
    publish_offer(connect(FT))  # open for 30 days
    clock.advance(days=31)
    assert Rankings(hub.store, clock).rank_pending() == 0
    clock.advance(days=-2)
    assert Rankings(hub.store, clock).rank_pending() == 1


def test_the_hub_ranks_open_offers_in_the_background(test_pki, database_url, clock):
    with started_hub(test_pki, database_url, clock, match_ranking_seconds=1) as running:
        ft = make_participant(running.port, test_pki, FT, clock)
        publish_offer(ft)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with running.store.unit_of_work() as uow:
                pk = uow.records.current(FT, OFFER, "o-mason")[0]
                if uow.matching.ranking_state(pk) is not None:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the offer was not ranked within 20 s")


def test_postgresql_watermark_waits_for_publications_in_flight(hub):
    """A publication took envelope ids and has not committed: the watermark must not pass it."""
    if hub.store.is_sqlite:
        pytest.skip("SQLite gives out ids under its write lock, in commit order")
    with hub.store.engine.connect() as holder, holder.begin():
        holder.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({RANKING_LOCK})")
        got: list[int] = []
        waiter = threading.Thread(target=lambda: got.append(_watermark(hub)), name="watermark", daemon=True)
        waiter.start()
        waiter.join(0.5)
        assert got == [] and waiter.is_alive()
    waiter.join(10)
    assert len(got) == 1


def test_postgresql_publications_hold_the_ranking_lock_from_their_ids(hub, connect):
    if hub.store.is_sqlite:
        pytest.skip("SQLite gives out ids under its write lock, in commit order")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(hub.store.engine, "before_cursor_execute", seen)
    try:
        publish_offer(connect(FT))
    finally:
        event.remove(hub.store.engine, "before_cursor_execute", seen)
    lock = next(i for i, s in enumerate(statements) if f"pg_advisory_xact_lock_shared({RANKING_LOCK})" in s)
    ids = next(i for i, s in enumerate(statements) if "nextval" in s)
    assert lock < ids


def _watermark(hub) -> int:
    with hub.store.unit_of_work() as uow:
        return uow.matching.publication_watermark()


def test_rank_offers_command(hub, connect, database_url, monkeypatch, capsys):
    from hub.entrypoints.cli import main

    publish_offer(connect(FT))
    monkeypatch.setenv("SPEHUB_DATABASE_URL", database_url)
    assert main(["db", "rank-offers"]) == 0
    assert "ranked the candidates of 1 open offer(s)" in capsys.readouterr().out
    with hub.store.unit_of_work() as uow:
        assert uow.matching.ranking_state(uow.records.current(FT, OFFER, "o-mason")[0]) is not None
    assert main(["db", "rank-offers"]) == 0
    assert "ranked the candidates of 0 open offer(s)" in capsys.readouterr().out


def test_a_failing_offer_does_not_stop_the_ranking_of_the_others(hub, connect, clock, monkeypatch, caplog):
    """An offer whose ranking fails (here the database's "Expression tree is too large") is left
    aside with a growing backoff and counted; the offers after it are ranked."""
    from prometheus_client import CollectorRegistry
    from sqlalchemy.exc import OperationalError

    from hub.metrics import HubMetrics

    ft = connect(FT)
    publish_offer(ft, "o-broken")
    publish_offer(ft, "o-fine")
    with hub.store.unit_of_work() as uow:
        broken, fine = (uow.records.current(FT, OFFER, rid)[0] for rid in ("o-broken", "o-fine"))
    real = MatchingQueries.rank_offer

    def rank_offer(self, offer, revision, keep):
        if offer.pk == broken:
            raise OperationalError(
                "SELECT …", {}, Exception("Expression tree is too large (maximum depth 1000)")
            )
        return real(self, offer, revision, keep)

    monkeypatch.setattr(MatchingQueries, "rank_offer", rank_offer)
    now = [1000.0]
    metrics = HubMetrics(CollectorRegistry())
    rankings = Rankings(hub.store, clock, metrics=metrics, monotonic=lambda: now[0])

    def failures() -> float:
        return metrics.registry.get_sample_value("spehub_match_ranking_failures_total")

    with caplog.at_level("ERROR", logger="spehub"):
        assert rankings.rank_pending() == 1  # o-fine, although o-broken came first
    assert f"offer record {broken} failed" in caplog.text
    with hub.store.unit_of_work() as uow:
        assert uow.matching.ranking_state(fine) is not None and uow.matching.ranking_state(broken) is None
    assert rankings.backing_off() == [broken] and failures() == 1
    assert rankings.rank_pending() == 0 and failures() == 1  # left aside: not tried again yet
    now[0] += 31
    assert rankings.rank_pending() == 0 and failures() == 2  # tried, failed: now 60 s
    now[0] += 31
    assert rankings.backing_off() == [broken]
    monkeypatch.setattr(MatchingQueries, "rank_offer", real)  # the cause is fixed
    now[0] += 30
    assert rankings.rank_pending() == 1 and rankings.backing_off() == []
