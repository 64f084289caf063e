"""Consents as indexed: their status, purposes, validity and the recipients they name."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    and_,
    exists,
    or_,
    select,
)

from hub.domain.stored import (
    Audience,
)
from hub.store import schema as t
from hub.store.sql import (
    PROFILE_TYPE,
    Repository,
    chunks,
    in_force,
    names_recipient,
)


class ConsentRepository(Repository):
    """Consents as indexed: their status, purposes, validity and the recipients they name."""

    def states(self, origin_id: str, record_ids: Iterable[str]) -> dict[str, int]:
        """Current status of the origin's consent records (by record id)."""
        c = t.consents.c
        ids = sorted(set(record_ids))
        out: dict[str, int] = {}
        for chunk in chunks(ids, 500):
            for rid, status in self.conn.execute(
                select(c.record_id, c.status).where(c.origin_id == origin_id, c.record_id.in_(chunk))
            ):
                out[rid] = status
        return out

    def allows(self, origin_id: str, consent_record_id: str, audience: Audience, named_only: bool) -> bool:
        """Whether the consent is active now, grants the audience's purpose and names it
        (by participant id, or also by country unless ``named_only``)."""
        c, cr = t.consents.c, t.consent_recipients.c
        named = cr.participant_id == audience.participant_id
        if not named_only:
            named = or_(named, cr.country_code == audience.country_code)
        query = select(c.record_pk).where(
            c.origin_id == origin_id,
            c.record_id == consent_record_id,
            *in_force(audience.active_status, audience.now_us, audience.purpose_bit),
            exists().where(cr.record_pk == c.record_pk, named),
        )
        return self.conn.execute(query).first() is not None

    def profiles_under(self, origin_id: str, consent_record_id: str) -> list[int]:
        """Record pks of the origin's profiles governed by this consent."""
        p = t.profiles.c
        return list(
            self.conn.execute(
                select(p.record_pk).where(p.origin_id == origin_id, p.consent_record_id == consent_record_id)
            ).scalars()
        )

    def grants(
        self, origin_id: str, consent_record_id: str, purpose_bit: int, now_us: int, active: int
    ) -> bool:
        """Whether the origin's consent is active now and grants the purpose (whoever it names)."""
        c = t.consents.c
        query = select(c.record_pk).where(
            c.origin_id == origin_id,
            c.record_id == consent_record_id,
            *in_force(active, now_us, purpose_bit),
        )
        return self.conn.execute(query).first() is not None

    def of_profile(self, origin_id: str, profile_record_id: str) -> str | None:
        """The consent record id that governs an origin's current profile, or None."""
        p, r = t.profiles.c, t.records.c
        query = (
            select(p.consent_record_id)
            .select_from(t.profiles)
            .join(t.records, r.id == p.record_pk)
            .where(r.origin_id == origin_id, r.payload_type == PROFILE_TYPE, r.record_id == profile_record_id)
        )
        return self.conn.execute(query).scalar()

    def allowed(
        self, subjects: Iterable[tuple[str, str]], audience: Audience, named: bool
    ) -> set[tuple[str, str]]:
        """Of the (origin id, consent record id) pairs, those whose consent is in force now for the
        audience's purpose and, with ``named``, names the audience (participant or country): what
        a disclosure read from a replica is checked against on the primary."""
        c = t.consents.c
        wanted = sorted(set(subjects))
        out: set[tuple[str, str]] = set()
        for chunk in chunks(wanted, 200):
            # The pairs' record ids and origins as two lists, the rows then held to the pairs asked
            # for: the unique index (origin, record id) is searched for each combination. On
            # PostgreSQL each list is one array parameter, so the statement text never changes and
            # PostgreSQL and the driver reuse their work (an OR of 50 pairs was built, sent and
            # planned anew on every match); SQLite scanned the whole index for a row-value IN.
            pairs = and_(
                self._among(c.record_id, sorted({r for _, r in chunk})),
                self._among(c.origin_id, sorted({o for o, _ in chunk})),
            )
            conditions = [
                pairs,
                *in_force(audience.active_status, audience.now_us, audience.purpose_bit),
            ]
            if named:
                conditions.append(names_recipient(audience.participant_id, audience.country_code))
            asked = set(chunk)
            out.update(
                (o, r)
                for o, r in self.conn.execute(select(c.origin_id, c.record_id).where(*conditions))
                if (o, r) in asked
            )
        return out
