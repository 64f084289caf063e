"""The matching read model: scoring in SQL, kept rankings, matching facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from hub.domain import matching
from hub.domain.records import mobility_bit
from hub.domain.stored import (
    Audience,
    MatchRow,
    RankingState,
    StoredEnvelope,
)
from hub.store import schema as t
from hub.store.sql import (
    PROFILE_TYPE,
    RANKING_LOCK,
    Repository,
    chunks,
    in_force,
    isco_group,
    languages_held,
    names_recipient,
    newest_envelope,
    offers_with_envelopes,
    stored,
)

WINDOW = 5000
"""Occupation rows of an offer's top tier read, at most, to find a page of top-score candidates."""


class MatchingQueries(Repository):
    """The matching read model: scoring in SQL, kept rankings, matching facts."""

    def candidates(
        self,
        audience: Audience,
        own_origin: str | None,
        offer: matching.Offer,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[MatchRow]:
        """A page of the profiles that pass the hard constraints of ``offer`` and whose consent allows
        matching, best score first (equal scores by record), after the (score, record pk) ``after``.

        The score is computed by the database (hub.domain.matching's rules, in SQL), over every
        profile of the offer's ISCO-08 sub-major group, so only the page is read back. With
        ``own_origin``, that origin's own candidates under an active matching consent; else those
        whose consent also names the audience (participant or country).
        """
        consented = self._consented(audience, own_origin)
        rows = self._best_first(offer, consented, after, limit)
        if rows is None:
            rows = list(self.conn.execute(self._scored(offer, consented, after, limit)))
        return self._match_rows(rows, offer)

    def ranked_candidates(
        self,
        audience: Audience,
        own_origin: str | None,
        offer: matching.Offer,
        state: RankingState,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[MatchRow] | None:
        """The page ``match_candidates`` gives, read from the offer's kept ranking; None when the
        ranking cannot tell it (the page reaches past the candidates kept).

        Why it is exact: the ranking holds the best candidates, by the profiles' own facts, of every
        profile whose current version is at or below the watermark, up to the boundary. A profile's
        facts change only with a new version, which gets a newer envelope. So every candidate that
        ranks before the boundary is either kept (and still at the kept version) or newer than the
        watermark; the second kind is scored here. Consent, which changes without a new profile
        version, is checked on every read, for both kinds.
        """
        consented = self._consented(audience, own_origin)
        p, r, c = t.profiles.c, t.records.c, t.consents.c
        ranking: Any = t.match_rankings
        if not self.is_sqlite:
            # The offer's kept candidates in ranking order, behind an OFFSET 0 (PostgreSQL does not
            # merge such a subquery into the joins): the page is then read in that order and stops
            # at its last row. Merged, the planner's estimate of how few candidates pass the consent
            # conditions (11 of 500, where all passed) made it join all 500 and sort them: 48 ms
            # against 5 at 1M profiles, and a ranked match p95 of 52 ms instead of about 36.
            ranking = (
                select(t.match_rankings.c.profile_pk, t.match_rankings.c.minus_score)
                .where(t.match_rankings.c.offer_pk == offer.pk)
                .order_by(t.match_rankings.c.minus_score, t.match_rankings.c.profile_pk)
                .offset(0)
                .subquery("ranking")
            )
        mr = ranking.c
        kept = (
            select(mr.profile_pk, p.origin_id, p.residence_country, p.consent_record_id, -mr.minus_score)
            .select_from(ranking)
            .join(t.profiles, p.record_pk == mr.profile_pk)
            .join(t.records, r.id == mr.profile_pk)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(r.envelope_id <= state.watermark, *consented)
        )
        if self.is_sqlite:
            kept = kept.where(mr.offer_pk == offer.pk)
        if after is not None:
            kept = kept.where(
                or_(mr.minus_score > -after[0], and_(mr.minus_score == -after[0], mr.profile_pk > after[1]))
            )
        kept = kept.order_by(mr.minus_score, mr.profile_pk).limit(limit)
        newer = select(r.id).where(r.envelope_id > state.watermark, r.payload_type == PROFILE_TYPE)
        rows = {row[0]: row for row in self.conn.execute(kept)}
        if self.conn.execute(select(newer.exists())).scalar():
            # Building this query costs more than running it on a few profiles: only when needed.
            rows.update(
                (row[0], row)
                for row in self.conn.execute(self._scored(offer, consented, after, limit, among=newer))
            )
        ranked = sorted(rows.values(), key=lambda row: (-row[4], row[0]))
        if state.boundary is not None:
            last = (-state.boundary[0], state.boundary[1])
            ranked = [row for row in ranked if (-row[4], row[0]) <= last]
            if len(ranked) < limit:
                return None
        return self._match_rows(ranked[:limit], offer)

    def rank_offer(
        self, offer: matching.Offer, offer_revision: int, keep: int
    ) -> tuple[RankingState, list[tuple[int, int]]]:
        """The best ``keep`` candidates of ``offer`` by the profiles' own facts, consent aside:
        ``(state, [(profile pk, score), ...])``. Keep them with ``save_ranking``."""
        watermark = self.publication_watermark()
        # SQLite reads one snapshot, which holds no envelope above the watermark; PostgreSQL reads
        # what is committed when each statement starts, so later profiles are left out by hand.
        up_to = None if self.is_sqlite else watermark
        found = self._best_first(offer, [], None, keep, up_to=up_to)
        if found is None:
            found = list(self.conn.execute(self._scored(offer, [], None, keep, up_to=up_to)))
        rows = [(int(row[0]), int(row[4])) for row in found]
        boundary = (rows[-1][1], rows[-1][0]) if len(rows) == keep else None
        return RankingState(offer_revision, watermark, boundary), rows

    def publication_watermark(self) -> int:
        """An envelope id such that every envelope at or below it is already stored (committed) and
        every later one will be above it.

        SQLite gives out ids in commit order (under its write lock). PostgreSQL's sequence does
        not: a publication may take an id, then commit after a later one. Publications hold
        RANKING_LOCK shared from taking their ids to their commit; taking it exclusively here
        waits for those in flight, after which the largest id stored is such a point."""
        if self.is_sqlite:
            return newest_envelope(self.conn)
        self.conn.exec_driver_sql(f"SELECT pg_advisory_lock({RANKING_LOCK})")
        try:
            return newest_envelope(self.conn)
        finally:
            self.conn.exec_driver_sql(f"SELECT pg_advisory_unlock({RANKING_LOCK})")

    def ranking_state(self, offer_pk: int, lock: bool = False) -> RankingState | None:
        """The kept ranking's state; ``lock``: held until the transaction ends (PostgreSQL; SQLite
        has one writer at a time), so that two processes saving a ranking of the offer take turns."""
        s = t.match_ranking_state.c
        query = select(s.offer_revision, s.watermark, s.boundary_score, s.boundary_pk).where(
            s.offer_pk == offer_pk
        )
        row = self.conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            return None
        return RankingState(row[0], row[1], None if row[2] is None else (row[2], row[3]))

    def save_ranking(
        self, offer_pk: int, state: RankingState, rows: Sequence[tuple[int, int]], now_us: int
    ) -> bool:
        """Keep a ranking of an offer, unless a ranking at least as recent is kept already (another
        hub process computed it meanwhile). Returns whether it was kept.

        Only what changed is written: an offer is ranked again whenever enough profiles arrived, and
        most of its 500 kept candidates are the same each time; deleting and inserting them all
        wrote that many rows again (and left as many dead ones for VACUUM) on every round."""
        current = self.ranking_state(offer_pk, lock=True)
        if current is not None and (current.offer_revision, current.watermark) >= (
            state.offer_revision,
            state.watermark,
        ):
            return False
        s, mr = t.match_ranking_state.c, t.match_rankings.c
        values = {
            "offer_revision": state.offer_revision,
            "watermark": state.watermark,
            "boundary_score": state.boundary[0] if state.boundary else None,
            "boundary_pk": state.boundary[1] if state.boundary else None,
            "computed_at_us": now_us,
        }
        if current is None:
            # Two processes ranking a new offer at once: the second insert fails (StoreConflictError).
            self.conn.execute(insert(t.match_ranking_state).values(offer_pk=offer_pk, **values))
        else:
            self.conn.execute(update(t.match_ranking_state).where(s.offer_pk == offer_pk).values(**values))
        kept = dict(
            self.conn.execute(select(mr.profile_pk, mr.minus_score).where(mr.offer_pk == offer_pk)).all()
        )
        wanted = {pk: -score for pk, score in rows}
        gone = sorted(pk for pk, minus in kept.items() if wanted.get(pk) != minus)
        for chunk in chunks(gone, 500):
            self.conn.execute(
                delete(t.match_rankings).where(mr.offer_pk == offer_pk, self._among(mr.profile_pk, chunk))
            )
        self._insert_many(
            t.match_rankings,
            [
                {"offer_pk": offer_pk, "profile_pk": pk, "minus_score": minus}
                for pk, minus in wanted.items()
                if kept.get(pk) != minus
            ],
        )
        return True

    def offers_to_rank(
        self, open_on: date, fresh_within: int, limit: int | None, leave_aside: Sequence[int] = ()
    ) -> list[int]:
        """Offers open on ``open_on`` (record pks) with no ranking, a ranking of an earlier version,
        or one more than ``fresh_within`` envelopes behind the newest; unranked first, then the
        oldest rankings; at most ``limit`` (None: all); none of ``leave_aside``."""
        o, r, s = t.offers.c, t.records.c, t.match_ranking_state.c
        newest = newest_envelope(self.conn)
        query = (
            select(o.record_pk)
            .select_from(t.offers)
            .join(t.records, r.id == o.record_pk)
            .outerjoin(t.match_ranking_state, s.offer_pk == o.record_pk)
            .where(
                or_(o.deadline.is_(None), o.deadline >= open_on),
                or_(
                    s.offer_pk.is_(None),
                    s.offer_revision != r.envelope_id,
                    s.watermark < newest - fresh_within,
                ),
                *([o.record_pk.not_in(list(leave_aside))] if leave_aside else []),
            )
            .order_by(s.watermark.is_not(None), s.watermark, o.record_pk)
            .limit(limit)
        )
        return [int(pk) for pk in self.conn.execute(query).scalars()]

    def _consented(self, audience: Audience, own_origin: str | None) -> list[Any]:
        """Conditions on ``profiles`` and ``consents``: the consent allows ``audience`` to match now."""
        p = t.profiles.c
        conditions = in_force(audience.active_status, audience.now_us, audience.purpose_bit)
        if own_origin is not None:
            conditions.append(p.origin_id == own_origin)
        else:
            conditions.append(names_recipient(audience.participant_id, audience.country_code))
        return conditions

    def _best_first(
        self,
        offer: matching.Offer,
        consented: list[Any],
        after: tuple[int, int] | None,
        limit: int,
        up_to: int | None = None,
    ) -> list[Any] | None:
        """The page ``_scored`` gives when it holds only candidates of the highest score an offer
        allows (the closest occupation, every required skill, enough experience), found without
        scoring the group; None when that cannot be shown, and the group must be scored.

        Candidates of equal score come in record order, so the first ``limit`` of the top score are
        the first ``limit`` in record order that pass its conditions. They are looked for among the
        first WINDOW occupation rows of the top tier (in record order, after the profile's own
        constraints); finding ``limit`` of them there proves the page. In a large group, where
        scoring every candidate is slow (tens of thousands pass the hard constraints at a million
        profiles), that is the usual case: 90% of the synthetic pool's offers' first pages.
        """
        top = self._top_score(offer)
        if after is not None and after[0] < top:
            return None  # past the top score: only scoring tells the order
        po, p = t.profile_occupations.c, t.profiles.c
        code = offer.isco08_code
        level = code if len(code) == 4 else code[:3] if len(code) == 3 else code[:2]
        tier = isco_group(po.isco08_code, level) == level  # the closest occupation of all
        rows = select(po.record_pk).where(tier, *self._own(offer))
        if after is not None and after[0] == top:
            rows = rows.where(po.record_pk > after[1])
        window = rows.distinct().order_by(po.record_pk).limit(WINDOW).subquery()
        source: Any = t.profiles.join(window, window.c.record_pk == p.record_pk)
        conditions = [*consented, *languages_held(offer.languages)]
        source = self._restricted(source, consented, conditions, up_to)
        if offer.skills:
            conditions.append(self._skills_held(offer) == len(offer.skills))
        if offer.required_experience_months:
            pe = t.profile_experience.c
            conditions.append(
                exists().where(pe.record_pk == p.record_pk, pe.months >= offer.required_experience_months)
            )
        query = (
            select(p.record_pk, p.origin_id, p.residence_country, p.consent_record_id, literal(top))
            .select_from(source)
            .where(*conditions)
            .order_by(p.record_pk)
            .limit(limit)
        )
        found = list(self.conn.execute(query))
        return found if len(found) == limit else None

    @staticmethod
    def _restricted(source: Any, consented: list[Any], conditions: list[Any], up_to: int | None) -> Any:
        """``source`` (profiles and their occupation rows) joined to the consents when ``consented``
        has conditions on them, and to the records when only profiles whose current version's
        envelope is at or below ``up_to`` count (the condition is added to ``conditions``)."""
        p, c = t.profiles.c, t.consents.c
        if consented:
            source = source.join(
                t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id)
            )
        if up_to is not None:
            r = t.records.c
            source = source.join(t.records, r.id == p.record_pk)
            conditions.append(r.envelope_id <= up_to)
        return source

    @staticmethod
    def _skills_held(offer: matching.Offer) -> Any:
        """How many of the offer's required skills a profile holds (a scalar subquery on ``profiles``)."""
        ps, p = t.profile_skills.c, t.profiles.c
        return (
            select(func.count(func.distinct(ps.skill)))
            .where(ps.record_pk == p.record_pk, ps.skill.in_(list(offer.skills)))
            .scalar_subquery()
        )

    @staticmethod
    def _top_score(offer: matching.Offer) -> int:
        """The highest score a candidate can have for ``offer``."""
        level = {4: matching.UNIT, 3: matching.MINOR}.get(len(offer.isco08_code), matching.SUB_MAJOR)
        return matching.OCCUPATION_POINTS[level] + matching.SKILL_POINTS + matching.EXPERIENCE_POINTS

    @staticmethod
    def _own(offer: matching.Offer) -> list[Any]:
        """The constraints of the profile alone, on its occupation rows (revision 0005): a profile
        names no destination or the offer's country; no mobility type or the offer's; available in
        time. Filtered in an occupation index range, before any profile is read."""
        po = t.profile_occupations.c
        own: list[Any] = [
            or_(
                po.destinations == "",
                (literal(",") + po.destinations + literal(",")).contains(f",{offer.work_country},"),
            ),
            or_(po.mobility_mask == 0, po.mobility_mask.op("&")(mobility_bit(offer.mobility_type)) != 0),
        ]
        if offer.start_date is not None:
            own.append(or_(po.available_from.is_(None), po.available_from <= offer.start_date))
        return own

    def _scored(
        self,
        offer: matching.Offer,
        consented: list[Any],
        after: tuple[int, int] | None,
        limit: int,
        among: Any = None,
        up_to: int | None = None,
    ) -> Select[Any]:
        """The best ``limit`` profiles for ``offer`` after ``after``, scored in SQL:
        ``(record pk, origin, residence country, consent record id, score)``.

        ``consented``: conditions on profiles and consents (none: consent aside, as a kept ranking
        is computed). ``among``: only the profiles whose record pk it selects. ``up_to``: only
        profiles whose current version's envelope is at or below it."""
        p = t.profiles.c
        po = t.profile_occupations.c
        ps, pe = t.profile_skills.c, t.profile_experience.c
        own = self._own(offer)
        conditions: list[Any] = [*consented, *languages_held(offer.languages)]
        # Occupation points: the closest of the profile's occupations (no row: outside the sub-major
        # group), by the leading digits both codes have and agree on, as matching._fit counts them
        # (a code known only at a coarser group, the profile's or the offer's, shares no more).
        code = offer.isco08_code
        fit: Any = literal(matching.OCCUPATION_POINTS[matching.SUB_MAJOR])
        if len(code) >= 3:
            fit = case(
                *(
                    [(po.isco08_code == code, matching.OCCUPATION_POINTS[matching.UNIT])]
                    if len(code) == 4
                    else []
                ),
                (
                    and_(func.length(po.isco08_code) >= 3, func.substr(po.isco08_code, 1, 3) == code[:3]),
                    matching.OCCUPATION_POINTS[matching.MINOR],
                ),
                else_=matching.OCCUPATION_POINTS[matching.SUB_MAJOR],
            )
        in_group = [isco_group(po.isco08_code, offer.isco08_code[:2]) == offer.isco08_code[:2], *own]
        if among is not None:
            in_group.append(po.record_pk.in_(among))
        occupation = (
            select(po.record_pk.label("pk"), func.max(fit).label("points"))
            .where(*in_group)
            .group_by(po.record_pk)
            .subquery()
        )
        # The parts of the score in integers, as matching.skill_points and experience_points compute
        # them: integer division of non-negative integers rounds down in SQLite and PostgreSQL alike.
        months = func.coalesce(pe.months, 0)
        required = offer.required_experience_months
        experience_points: Any = (
            literal(matching.EXPERIENCE_POINTS)
            if not required
            else case(
                (months >= required, matching.EXPERIENCE_POINTS),
                (months <= 0, 0),
                else_=(months * matching.EXPERIENCE_POINTS) // required,
            )
        )
        source: Any = t.profiles.join(occupation, occupation.c.pk == p.record_pk)
        source = self._restricted(source, consented, conditions, up_to)
        source = source.outerjoin(t.profile_experience, pe.record_pk == p.record_pk)
        skill_points: Any = literal(matching.SKILL_POINTS)
        if offer.skills and (among is not None or not self.is_sqlite):
            # Each candidate's skills are looked up: on a few profiles, and on PostgreSQL always,
            # where aggregating every holder of the skills across the pool (as below) was 700 ms
            # of a 950 ms match at a million profiles (337,000 holders for 1,500 candidates, the
            # group's constraints having left the rest out before any profile was read).
            skill_points = (self._skills_held(offer) * matching.SKILL_POINTS) // len(offer.skills)
        elif offer.skills:
            held = (
                select(ps.record_pk.label("pk"), func.count(func.distinct(ps.skill)).label("n"))
                .where(ps.skill.in_(list(offer.skills)))
                .group_by(ps.record_pk)
                .subquery()
            )
            source = source.outerjoin(held, held.c.pk == p.record_pk)
            skill_points = (func.coalesce(held.c.n, 0) * matching.SKILL_POINTS) // len(offer.skills)
        score = (occupation.c.points + skill_points + experience_points).label("score")
        ranked = (
            select(p.record_pk, p.origin_id, p.residence_country, p.consent_record_id, score)
            .select_from(source)
            .where(*conditions)
            .subquery()
        )
        query = select(ranked)
        if after is not None:
            query = query.where(
                or_(
                    ranked.c.score < after[0], and_(ranked.c.score == after[0], ranked.c.record_pk > after[1])
                )
            )
        return query.order_by(ranked.c.score.desc(), ranked.c.record_pk).limit(limit)

    def _match_rows(self, rows: Sequence[Any], offer: matching.Offer) -> list[MatchRow]:
        facts = self._facts([row[0] for row in rows], offer)
        return [
            (facts[pk], origin, residence, consent_id, int(points))
            for pk, origin, residence, consent_id, points in rows
        ]

    def _facts(self, pks: list[int], offer: matching.Offer | None = None) -> dict[int, matching.Candidate]:
        """The matching facts of some profiles (skills: only those ``offer`` requires, or all of them)."""
        if not pks:
            return {}
        p, po, pl, pd = t.profiles.c, t.profile_occupations.c, t.profile_languages.c, t.profile_destinations.c
        ps, pe = t.profile_skills.c, t.profile_experience.c
        base = {
            pk: (mask, available)
            for pk, mask, available in self.conn.execute(
                select(p.record_pk, p.mobility_mask, p.available_from).where(self._among(p.record_pk, pks))
            )
        }
        # The five lists in one statement (one round trip, compiled once): (pk, list, text, number).
        skills_query = select(ps.record_pk, literal("s"), ps.skill, literal(0)).where(
            self._among(ps.record_pk, pks)
        )
        if offer is not None:
            skills_query = skills_query.where(ps.skill.in_(list(offer.skills)))
        lists = union_all(
            select(po.record_pk, literal("o"), po.isco08_code, literal(0)).where(
                self._among(po.record_pk, pks)
            ),
            select(pl.record_pk, literal("l"), pl.language_code, pl.level).where(
                self._among(pl.record_pk, pks)
            ),
            skills_query,
            select(pe.record_pk, literal("e"), literal(""), pe.months).where(self._among(pe.record_pk, pks)),
            select(pd.record_pk, literal("d"), pd.country_code, literal(0)).where(
                self._among(pd.record_pk, pks)
            ),
        )
        occupations: dict[int, list[str]] = {}
        languages: dict[int, dict[str, int]] = {}
        skills: dict[int, set[str]] = {}
        experience: dict[int, int] = {}
        destinations: dict[int, list[str]] = {}
        for pk, kind, text, number in self.conn.execute(lists):
            if kind == "o":
                occupations.setdefault(pk, []).append(text)
            elif kind == "l":
                languages.setdefault(pk, {})[text] = number
            elif kind == "s":
                skills.setdefault(pk, set()).add(text)
            elif kind == "e":
                experience[pk] = number
            else:
                destinations.setdefault(pk, []).append(text)
        return {
            pk: matching.Candidate(
                pk=pk,
                isco08_codes=tuple(occupations.get(pk, ())),
                languages=languages.get(pk, {}),
                destinations=tuple(destinations.get(pk, ())),
                mobility_mask=mask,
                available_from=available,
                skills=frozenset(skills.get(pk, ())),
                experience_months=int(experience.get(pk, 0)),
            )
            for pk, (mask, available) in base.items()
        }

    def candidate_facts(self, record_pk: int) -> tuple[matching.Candidate, str]:
        """The matching facts of one profile (its full skill list), and its residence country."""
        residence = self.conn.execute(
            select(t.profiles.c.residence_country).where(t.profiles.c.record_pk == record_pk)
        ).scalar_one()
        return self._facts([record_pk])[record_pk], residence

    def offers_for(
        self, candidate: matching.Candidate, residence_country: str, open_on: date
    ) -> list[tuple[int, StoredEnvelope]]:
        """Open offers within the candidate's sub-major groups, destinations, mobility types and
        availability, addressed to its residence country (or to no country in particular)."""
        o, ot = t.offers.c, t.offer_targets.c
        sub_majors = sorted({code[:2] for code in candidate.isco08_codes})
        if not sub_majors:
            return []
        conditions: list[Any] = [
            or_(*(o.isco08_code.startswith(x) for x in sub_majors)),
            or_(o.deadline.is_(None), o.deadline >= open_on),
            or_(
                ~exists().where(ot.record_pk == o.record_pk),
                exists().where(ot.record_pk == o.record_pk, ot.country_code == residence_country),
            ),
        ]
        if candidate.destinations:
            conditions.append(o.work_country.in_(candidate.destinations))
        if candidate.mobility_mask:
            wanted = [m for m in range(1, 5) if candidate.mobility_mask & mobility_bit(m)]
            conditions.append(o.mobility_type.in_(wanted))
        if candidate.available_from is not None:
            conditions.append(or_(o.start_date.is_(None), o.start_date >= candidate.available_from))
        return [(row[0], stored(row[1:])) for row in self.conn.execute(offers_with_envelopes(conditions))]
