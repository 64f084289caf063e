"""Matching: the ranked, explained candidates of an offer and offers of a candidate (hub.domain.matching).

Only profiles whose consent is active and grants matching take part. For an
offer's origin, the consent must also name it (or its country), and each
candidate returned is a disclosure written to the audit log in the same
transaction. An origin SPE may match its own candidates to an offer addressed
to its country. Pages are keyset on (score, record), so they are stable.

Scoring every profile of an offer's ISCO-08 sub-major group takes about a
second at a million profiles, so the hub keeps each open offer's best
candidates (``Rankings``, run in the background by ``RankingWorker``) and
answers from them, scoring only the profiles published since; the full query
answers whatever a kept ranking cannot (README, "Matching rules").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from spehub.v1 import consent_pb2, offer_pb2

from hub.clock import Clock, to_us
from hub.domain import matching, records
from hub.domain.audit import AuditDraft, Disclosure
from hub.domain.directory import Participant, ParticipantKind
from hub.domain.records import PayloadKind
from hub.domain.stored import Audience, RankingState, StoredEnvelope
from hub.errors import HubError, NotFoundError, PermissionDeniedError, StoreConflictError
from hub.metrics import HubMetrics
from hub.services.operations import StatisticsKeeper
from hub.services.paging import decode_token, encode_token, page_size_of
from hub.services.privacy import Sealer
from hub.store.engine import Store

MATCHING_BIT = records.purpose_bit(consent_pb2.PURPOSE_MATCHING)
KEEP = 500
"""Candidates kept per offer: five pages of the largest size, some of them beyond consent."""
FRESH_WITHIN = 10_000
"""A ranking more than this many publications (envelopes) behind is computed again: the profiles
published since are scored on every read, and this bounds their number."""

log = logging.getLogger("spehub")
# A failed ranking is tried again after 30 s, then twice as long each time, at most every hour.
RETRY_FIRST, RETRY_MAX = 30.0, 3600.0


class Rankings:
    """Keeps the best candidates of open offers (hub.store.schema.match_rankings)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        keep: int = KEEP,
        fresh_within: int = FRESH_WITHIN,
        metrics: HubMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        statistics: StatisticsKeeper | None = None,
    ):
        self.store = store
        self.statistics = statistics
        self.clock = clock
        self.keep = keep
        self.fresh_within = fresh_within
        self.metrics = metrics
        self.monotonic = monotonic
        # Offers whose ranking failed (record pk -> failures in a row, when to try again): each is
        # left aside until then, so that one offer never stops the rankings of the others.
        self._failing: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def usable(self, state: RankingState | None, offer_revision: int, newest: int) -> bool:
        """Whether a kept ranking may answer for the offer's current version."""
        return (
            state is not None
            and state.offer_revision == offer_revision
            and newest - state.watermark <= self.fresh_within
        )

    def rank(self, offer_pk: int) -> bool:
        """Rank the candidates of one offer and keep them. Returns False when the offer is gone
        (withdrawn, erased) or a ranking as recent was kept meanwhile."""
        with self.store.unit_of_work() as uow:
            revision = uow.records.indexed_offer_revision(offer_pk)
            if revision is None:
                return False
            envelope = uow.records.envelopes_of([offer_pk])[offer_pk]
            offer = matching.offer_facts(offer_pk, offer_pb2.JobOffer.FromString(envelope.payload))
            # A read transaction: on SQLite publications go on while the pool is scored.
            state, rows = uow.matching.rank_offer(offer, revision, self.keep)
        try:
            with self.store.unit_of_work(write=True) as uow:
                if uow.records.indexed_offer_revision(offer_pk) != revision:
                    return False  # withdrawn or replaced while it was being ranked
                kept = uow.matching.save_ranking(offer_pk, state, rows, to_us(self.clock()))
                uow.commit()
        except StoreConflictError:
            return False  # another hub process kept a ranking of it at the same moment
        return kept

    def rank_pending(self, limit: int | None = 20) -> int:
        """Rank up to ``limit`` (None: all) open offers whose ranking is missing or stale, each once,
        as listed when called, leaving aside offers whose ranking failed until their backoff ends.
        Returns how many were ranked. A failure is counted, logged with the offer's record pk and
        isolated to that offer."""
        if self.statistics is not None:
            # A bulk load re-ranks every open offer: over tables without statistics, that took minutes.
            self.statistics.refresh_if_due()
        with self.store.unit_of_work() as uow:
            pending = uow.matching.offers_to_rank(
                self.clock().date(), self.fresh_within, limit, self.backing_off()
            )
        ranked = 0
        for pk in pending:
            try:
                ranked += self.rank(pk)
            except Exception as exc:  # whatever it is, it is this offer's alone
                self._failed(pk, exc)
            else:
                with self._lock:
                    self._failing.pop(pk, None)
        return ranked

    def backing_off(self) -> list[int]:
        """The offers (record pks) whose ranking failed and whose backoff has not ended."""
        now = self.monotonic()
        with self._lock:
            return sorted(pk for pk, (_n, retry_at) in self._failing.items() if retry_at > now)

    def _failed(self, pk: int, exc: Exception) -> None:
        with self._lock:
            failures = self._failing.get(pk, (0, 0.0))[0] + 1
            backoff = min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
            self._failing[pk] = (failures, self.monotonic() + backoff)
        if self.metrics is not None:
            self.metrics.ranking_failures.inc()
        log.error(
            "ranking the candidates of offer record %s failed (%d in a row; next try in %.0f s): %s",
            pk,
            failures,
            backoff,
            type(exc).__name__,
        )


class RankingWorker:
    """Runs ``Rankings.rank_pending`` every ``interval`` seconds in a thread, and at once when a
    match could not use a ranking (``wake``); it rests between batches as long as each took."""

    def __init__(self, rankings: Rankings, interval: float) -> None:
        self.rankings = rankings
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="match-rankings", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                while not self._stop.is_set():
                    start = time.monotonic()
                    if not self.rankings.rank_pending(10):
                        break
                    # Rest as long as it worked: at most half of one core, whatever the backlog
                    # (under heavy publication, rankings go stale as fast as they are made).
                    self._stop.wait(time.monotonic() - start)
            except HubError as exc:
                log.warning("ranking candidates of open offers failed: %s", exc)


@dataclass(frozen=True)
class CandidateResult:
    envelope: StoredEnvelope
    origin_country: str
    pseudonym: str
    match: matching.Match


@dataclass(frozen=True)
class OfferResult:
    envelope: StoredEnvelope
    match: matching.Match


class MatchService:
    """Ranks candidates for offers and offers for candidates, on behalf of a participant."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        sealer: Sealer,
        rankings: Rankings | None = None,
        worker: RankingWorker | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sealer = sealer
        self.rankings = rankings or Rankings(store, clock)
        self.worker = worker

    def candidates(
        self, caller: Participant, offer_origin: str, offer_record_id: str, page_size: int, page_token: str
    ) -> tuple[list[CandidateResult], str]:
        """A page of ranked candidates for an offer. Returns (results, next page token).

        Raises NotFoundError (no such offer, or not one the caller may match), InvalidRequestError.
        """
        size = page_size_of(page_size)
        position = decode_token(page_token, "m", 2)  # (score, record pk) of the last one shown
        now = self.clock()
        origin = offer_origin or caller.id
        audience = Audience(
            caller.id, caller.country_code, MATCHING_BIT, consent_pb2.CONSENT_STATUS_ACTIVE, to_us(now)
        )
        # Read on the replica when there is one (scoring reads thousands of rows); the consents are
        # checked again on the primary, in the transaction that records the disclosures.
        with self.store.unit_of_work(replica=True) as uow:
            found = uow.records.current(origin, PayloadKind.JOB_OFFER.payload_type, offer_record_id)
            if found is None or found[2] is not None:
                raise NotFoundError(f"no offer {offer_record_id!r} of {origin!r} to match")
            pk, envelope, _ = found
            offer_msg = offer_pb2.JobOffer.FromString(envelope.payload)
            own_origin = None
            if origin != caller.id:
                targets = set(offer_msg.target_country_codes)
                if caller.kind is not ParticipantKind.ORIGIN_SPE or (
                    targets and caller.country_code not in targets
                ):
                    raise NotFoundError(f"no offer {offer_record_id!r} of {origin!r} to match")
                own_origin = caller.id  # an origin SPE matches its own candidates only
            offer = matching.offer_facts(pk, offer_msg)
            after = (position[0], position[1]) if position else None
            rows = None
            state = uow.matching.ranking_state(pk)
            if self.rankings.usable(state, envelope.id, uow.records.newest_envelope()):
                assert state is not None
                rows = uow.matching.ranked_candidates(audience, own_origin, offer, state, after, size + 1)
            elif self.worker is not None:
                self.worker.wake()
            if rows is None:
                rows = uow.matching.candidates(audience, own_origin, offer, after, size + 1)
            page = []
            for facts, origin_id, residence, consent_id, points in rows[:size]:
                m = matching.match(facts, offer)
                if m is None or m.score != points:
                    # The SQL ranking and the rules disagree: a bug to fix, not the caller's problem.
                    # The rules decide (a candidate they refuse is left out) and the call answers.
                    log.error(
                        "match disagreement: offer record %s, profile record %s, SQL score %s, rules %s",
                        pk,
                        facts.pk,
                        points,
                        m.score if m is not None else "refused",
                    )
                    if m is None:
                        continue
                page.append((m, facts, origin_id, residence, consent_id))
            envelopes = uow.records.envelopes_of([facts.pk for _, facts, *_ in page])
        # The next page starts after the last candidate read, whether or not it is disclosed below.
        token = encode_token("m", page[-1][0].score, page[-1][1].pk) if len(rows) > size and page else ""
        # On the primary; a write transaction only when disclosures are audited (another SPE's match).
        with self.store.unit_of_work(write=own_origin is None) as uow:
            allowed = uow.consents.allowed(
                {(origin_id, consent_id) for _, _, origin_id, _, consent_id in page},
                audience,
                named=own_origin is None,
            )
            page = [item for item in page if (item[2], item[4]) in allowed]
            opened = self.sealer.open([envelopes[facts.pk] for _, facts, *_ in page])
            results = [
                CandidateResult(
                    env, residence, self.sealer.pseudonym(caller.id, env.origin_id, env.record_id), m
                )
                for (m, _, _, residence, _), env in zip(page, opened, strict=True)
                if env is not None
            ]
            if own_origin is None:
                uow.audit.append(
                    [
                        AuditDraft(
                            caller.id,
                            Disclosure.MATCH,
                            env.origin_id,
                            env.payload_type,
                            env.record_id,
                            env.version,
                            consent_id,
                            "matching",
                        )
                        for (_, _, _, _, consent_id), env in zip(page, opened, strict=True)
                        if env is not None
                    ],
                    audience.now_us,
                )
            uow.commit()
        return results, token

    def offers(
        self, caller: Participant, profile_record_id: str, page_size: int, page_token: str
    ) -> tuple[list[OfferResult], str]:
        """A page of ranked open offers for one of the caller's candidates. Returns (results, token).

        Raises NotFoundError (no such profile of the caller), PermissionDeniedError (its consent does
        not grant matching now), InvalidRequestError.
        """
        size, after = page_size_of(page_size), _after(page_token)
        now = self.clock()
        with self.store.unit_of_work() as uow:
            found = uow.records.current(
                caller.id, PayloadKind.CANDIDATE_PROFILE.payload_type, profile_record_id
            )
            if found is None or found[2] is not None:
                raise NotFoundError(f"no profile {profile_record_id!r} of this participant")
            consent_id = uow.consents.of_profile(caller.id, profile_record_id) or ""
            if not uow.consents.grants(
                caller.id, consent_id, MATCHING_BIT, to_us(now), consent_pb2.CONSENT_STATUS_ACTIVE
            ):
                raise PermissionDeniedError(
                    f"the consent of profile {profile_record_id!r} is not active or does not grant matching"
                )
            candidate, residence = uow.matching.candidate_facts(found[0])
            rows = uow.matching.offers_for(candidate, residence, now.date())
        scored = sorted(
            (
                (m, pk, env)
                for pk, env in rows
                if (
                    m := matching.match(
                        candidate, matching.offer_facts(pk, offer_pb2.JobOffer.FromString(env.payload))
                    )
                )
                is not None
            ),
            key=lambda item: (-item[0].score, item[1]),
        )
        rest = [item for item in scored if (-item[0].score, item[1]) > after]
        page = rest[:size]
        token = encode_token("m", page[-1][0].score, page[-1][1]) if len(rest) > size else ""
        return [OfferResult(env, m) for m, _, env in page], token


def _after(token: str) -> tuple[int, int]:
    """The (negated score, record pk) a page continues after."""
    keys = decode_token(token, "m", 2)
    return (-(10**9), 0) if keys is None else (-keys[0], keys[1])
