"""Matching: the ranked, explained candidates of an offer and offers of a candidate (hub.domain.matching).

Only profiles whose consent is active and grants matching take part. For an
offer's origin, the consent must also name it (or its country), and each
candidate returned is a disclosure written to the audit log in the same
transaction. An origin SPE may match its own candidates to an offer addressed
to its country. Pages are keyset on (score, record), so they are stable.
"""

from __future__ import annotations

from dataclasses import dataclass

from spehub.v1 import consent_pb2, offer_pb2

from hub.clock import Clock, to_us
from hub.domain import matching, records
from hub.domain.audit import AuditDraft
from hub.domain.directory import Participant, ParticipantKind
from hub.domain.records import PayloadKind
from hub.errors import NotFoundError, PermissionDeniedError
from hub.services.paging import decode_token, encode_token, page_size_of
from hub.services.privacy import Sealer
from hub.store.store import Audience, Store, StoredEnvelope

MATCHING_BIT = records.purpose_bit(consent_pb2.PURPOSE_MATCHING)


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

    def __init__(self, store: Store, clock: Clock, sealer: Sealer) -> None:
        self.store = store
        self.clock = clock
        self.sealer = sealer

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
        with self.store.unit_of_work(write=True) as uow:
            found = uow.current_record(origin, PayloadKind.JOB_OFFER.payload_type, offer_record_id)
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
            rows = uow.match_candidates(
                audience, own_origin, offer, (position[0], position[1]) if position else None, size + 1
            )
            page = []
            for facts, origin_id, residence, consent_id, points in rows[:size]:
                m = matching.match(facts, offer)
                if (
                    m is None or m.score != points
                ):  # the SQL ranking and the rules disagree: a bug, fail loudly
                    raise AssertionError(
                        f"match of record {facts.pk}: SQL score {points}, rules {m and m.score}"
                    )
                page.append((m, facts, origin_id, residence, consent_id))
            envelopes = uow.envelopes_of([facts.pk for _, facts, *_ in page])
            opened = self.sealer.open([envelopes[facts.pk] for _, facts, *_ in page])
            results = [
                CandidateResult(
                    env, residence, self.sealer.pseudonym(caller.id, env.origin_id, env.record_id), m
                )
                for (m, _, _, residence, _), env in zip(page, opened, strict=True)
                if env is not None
            ]
            if own_origin is None:
                uow.append_audit(
                    [
                        AuditDraft(
                            caller.id,
                            "disclose.match",
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
        token = encode_token("m", page[-1][0].score, page[-1][1].pk) if len(rows) > size else ""
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
            found = uow.current_record(
                caller.id, PayloadKind.CANDIDATE_PROFILE.payload_type, profile_record_id
            )
            if found is None or found[2] is not None:
                raise NotFoundError(f"no profile {profile_record_id!r} of this participant")
            consent_id = uow.profile_consent(caller.id, profile_record_id) or ""
            if not uow.consent_grants(
                caller.id, consent_id, MATCHING_BIT, to_us(now), consent_pb2.CONSENT_STATUS_ACTIVE
            ):
                raise PermissionDeniedError(
                    f"the consent of profile {profile_record_id!r} is not active or does not grant matching"
                )
            candidate, residence = uow.candidate_facts(found[0])
            rows = uow.offers_for(candidate, residence, now.date())
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
