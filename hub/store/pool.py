"""The pool read model: consented profiles and open offers, searched by filter."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    and_,
    exists,
    func,
    or_,
    select,
)

from hub.domain.stored import (
    Audience,
    OfferFilter,
    ProfileFilter,
    StoredEnvelope,
)
from hub.store import schema as t
from hub.store.sql import (
    ENVELOPE_COLUMNS,
    Repository,
    in_force,
    isco_group,
    languages_held,
    names_recipient,
    offers_with_envelopes,
    stored,
)

SEARCH_PLAN = (
    "SET LOCAL enable_bitmapscan = off; SET LOCAL max_parallel_workers_per_gather = 0; "
    "SET LOCAL join_collapse_limit = 1; SET LOCAL from_collapse_limit = 1"
)
"""PostgreSQL planner settings of a profile search's transaction (PoolQueries.profiles)."""


class PoolQueries(Repository):
    """The pool read model: consented profiles and open offers, searched by filter."""

    def profiles(
        self, f: ProfileFilter, audience: Audience, after_pk: int, limit: int
    ) -> list[tuple[int, str, str, StoredEnvelope]]:
        """Visible profiles matching ``f`` with record pk above ``after_pk``, by pk.

        Returns (record pk, residence country, consent record id, envelope). Visibility: the
        profile's consent record (same origin) is active, inside its validity
        window, grants the audience's purpose and names the caller or its country.
        """
        p, r, c = t.profiles.c, t.records.c, t.consents.c
        po = t.profile_occupations.c
        conditions = [
            *in_force(audience.active_status, audience.now_us, audience.purpose_bit),
            names_recipient(audience.participant_id, audience.country_code),
        ]
        source: Any = t.profiles
        order: Any = p.record_pk
        if len(f.isco08_prefixes) == 1:
            # One ISCO-08 group: its members come from the group's index in record order, so a page
            # reads about as many profiles as it returns, however rare the group is in the pool.
            group = f.isco08_prefixes[0]
            source = t.profile_occupations.join(t.profiles, p.record_pk == po.record_pk)
            order = po.record_pk
            conditions += [isco_group(po.isco08_code, group) == group, po.record_pk > after_pk]
            if len(group) < 4:
                # A profile with two occupations of the group comes once: with the lower code.
                other = t.profile_occupations.alias()
                conditions.append(
                    ~exists().where(
                        other.c.record_pk == po.record_pk,
                        isco_group(other.c.isco08_code, group) == group,
                        other.c.isco08_code < po.isco08_code,
                    )
                )
        else:
            conditions.append(p.record_pk > after_pk)
            if f.isco08_prefixes:
                conditions.append(
                    exists().where(
                        po.record_pk == p.record_pk,
                        or_(*(isco_group(po.isco08_code, x) == x for x in f.isco08_prefixes)),
                    )
                )
        conditions += languages_held(f.languages)
        if f.destination_country:
            pd = t.profile_destinations.c
            conditions.append(
                exists().where(pd.record_pk == p.record_pk, pd.country_code == f.destination_country)
            )
        if f.mobility_mask:
            conditions.append(p.mobility_mask.op("&")(f.mobility_mask) != 0)
        if f.available_by is not None:
            conditions.append(or_(p.available_from.is_(None), p.available_from <= f.available_by))
        if f.origin_countries:
            conditions.append(p.residence_country.in_(f.origin_countries))
        if f.record_pk is not None:
            conditions.append(p.record_pk == f.record_pk)
        query = (
            select(p.record_pk, p.residence_country, p.consent_record_id, *ENVELOPE_COLUMNS)
            .select_from(source)
            .join(t.records, r.id == p.record_pk)
            .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(*conditions)
            .order_by(order)
            .limit(limit)
        )
        if not self.is_sqlite:
            # PostgreSQL expects the filters to leave few profiles, so it reads the whole group
            # (bitmap scan, sorted, in parallel) where walking its index in record order stops after
            # one page: at a million profiles, 122 ms against 23 at p95 (in process, the minor
            # groups of the synthetic pool, after ANALYZE). And planning the joins in every order was
            # most of a search (5–8 ms of planning for 0.1–3 ms of execution at a million profiles):
            # the query is written in the order it should run (the group's index, then the profile,
            # its record, envelope and consent), so the planner keeps it (about 1 ms). For this
            # transaction only, in one round trip.
            self.conn.exec_driver_sql(SEARCH_PLAN)
        return [(row[0], row[1], row[2], stored(row[3:])) for row in self.conn.execute(query)]

    def offers(self, f: OfferFilter, after_pk: int, limit: int) -> list[tuple[int, StoredEnvelope]]:
        """Offers matching ``f`` with record pk above ``after_pk``, by pk."""
        o = t.offers.c
        conditions: list[Any] = [o.record_pk > after_pk]
        if f.isco08_prefixes:
            conditions.append(or_(*(o.isco08_code.startswith(x) for x in f.isco08_prefixes)))
        if f.work_country:
            conditions.append(o.work_country == f.work_country)
        if f.mobility_types:
            conditions.append(o.mobility_type.in_(f.mobility_types))
        if f.target_country:
            ot = t.offer_targets.c
            conditions.append(
                exists().where(ot.record_pk == o.record_pk, ot.country_code == f.target_country)
            )
        if f.open_on is not None:
            conditions.append(or_(o.deadline.is_(None), o.deadline >= f.open_on))
        query = offers_with_envelopes(conditions).order_by(o.record_pk).limit(limit)
        return [(row[0], stored(row[1:])) for row in self.conn.execute(query)]

    def sizes(self, purpose_bit: int, active: int, now_us: int) -> dict[str, int]:
        """Live profiles in the pool, by residence country, counting only those under a consent
        that is active now and grants ``purpose_bit`` (statistics), as ``statistics_rows`` does."""
        p, c = t.profiles.c, t.consents.c
        query = (
            select(p.residence_country, func.count())
            .select_from(t.profiles)
            .join(t.consents, and_(c.origin_id == p.origin_id, c.record_id == p.consent_record_id))
            .where(*in_force(active, now_us, purpose_bit))
            .group_by(p.residence_country)
        )
        return {country: int(n) for country, n in self.conn.execute(query).all()}
