"""Consents as indexed: their status, purposes, validity and the recipients they name."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    exists,
    or_,
    select,
)

from hub.domain.stored import (
    Audience,
)
from hub.store import schema as t
from hub.store.sql import (
    Repository,
    chunks,
    in_force,
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
            .where(r.origin_id == origin_id, r.record_id == profile_record_id)
        )
        return self.conn.execute(query).scalar()
