"""Mobility cycles and the events indexed under them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    func,
    insert,
    or_,
    select,
    update,
)

from hub.domain.stored import (
    CycleRow,
    StoredEnvelope,
)
from hub.store import schema as t
from hub.store.sql import (
    ENVELOPE_COLUMNS,
    Repository,
    chunks,
    stored,
)


class CycleRepository(Repository):
    """Mobility cycles and the events indexed under them."""

    def get(self, origin_id: str, application_id: str, lock: bool = False) -> CycleRow | None:
        """The cycle an origin SPE opened under ``application_id`` (locked for update if asked)."""
        mc = t.mobility_cycles.c
        query = select(t.mobility_cycles).where(
            mc.origin_id == origin_id, mc.application_id == application_id
        )
        if lock and not self.is_sqlite:  # SQLite's writers are serialised already (BEGIN IMMEDIATE)
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return CycleRow(*row) if row else None

    def open(self, state: int, now_us: int, **columns: Any) -> int:
        """Create a cycle in ``state`` (columns: see schema.mobility_cycles). Returns its id."""
        values = {**columns, "state": state, "updated_at_us": now_us}
        return int(self.conn.execute(insert(t.mobility_cycles).values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def set_state(self, cycle_id: int, state: int, now_us: int) -> None:
        mc = t.mobility_cycles.c
        self.conn.execute(
            update(t.mobility_cycles).where(mc.id == cycle_id).values(state=state, updated_at_us=now_us)
        )

    def add_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Index stored event records: record_pk, cycle_id, type, occurred_on, reintegration_outcome."""
        if rows:
            self.conn.execute(insert(t.mobility_events), list(rows))

    def of_party(
        self,
        party_id: str,
        profile_record_id: str = "",
        state: int = 0,
        before_id: int = 0,
        limit: int = 20,
        cycle: tuple[str, str] | None = None,
    ) -> list[CycleRow]:
        """Cycles the participant is a party to (opened them, or published the offer), newest first."""
        mc = t.mobility_cycles.c
        conditions: list[Any] = [
            or_(mc.origin_id == party_id, mc.offer_origin_id == party_id),
            mc.consent_record_id != "",  # a cycle whose candidate was erased is no one's any more
        ]
        if cycle is not None:
            conditions += [mc.origin_id == cycle[0], mc.application_id == cycle[1]]
        if profile_record_id:
            conditions += [mc.origin_id == party_id, mc.profile_record_id == profile_record_id]
        if state:
            conditions.append(mc.state == state)
        if before_id:
            conditions.append(mc.id < before_id)
        query = select(t.mobility_cycles).where(*conditions).order_by(mc.id.desc()).limit(limit)
        return [CycleRow(*row) for row in self.conn.execute(query)]

    def under_consent(self, origin_id: str, consent_record_id: str) -> list[CycleRow]:
        """The cycles an origin SPE opened for the candidate of this consent."""
        mc = t.mobility_cycles.c
        query = select(t.mobility_cycles).where(
            mc.origin_id == origin_id, mc.consent_record_id == consent_record_id
        )
        return [CycleRow(*row) for row in self.conn.execute(query)]

    def event_records(self, cycle_ids: Sequence[int]) -> list[tuple[int, int, int, str]]:
        """(cycle id, record pk, envelope id, origin) of every event of the cycles."""
        me, r = t.mobility_events.c, t.records.c
        out: list[tuple[int, int, int, str]] = []
        for chunk in chunks(list(cycle_ids), 500):
            query = (
                select(me.cycle_id, r.id, r.envelope_id, r.origin_id)
                .join(t.records, r.id == me.record_pk)
                .where(me.cycle_id.in_(chunk))
                .order_by(me.cycle_id, r.id)
            )
            out += [(int(c), int(pk), int(e), str(o)) for c, pk, e, o in self.conn.execute(query)]
        return out

    def unlink(self, cycle_ids: Sequence[int], event_envelope_ids: Sequence[int]) -> None:
        """Cut the erased candidate out of their cycles: the application and profile ids and the
        consent go (the corridor, state and event types stay, as counts), and any event payload
        still stored in clear (published before events were sealed) is emptied."""
        mc, e = t.mobility_cycles.c, t.envelopes.c
        for cycle_id in cycle_ids:
            self.conn.execute(
                update(t.mobility_cycles)
                .where(mc.id == cycle_id)
                .values(application_id=f"erased-{cycle_id}", profile_record_id="", consent_record_id="")
            )
        for chunk in chunks(list(event_envelope_ids), 500):
            self.conn.execute(
                update(t.envelopes)
                .where(e.id.in_(chunk), func.substr(e.payload, 1, 1) != b"\x00")
                .values(payload=b"")
            )

    def events(self, cycle_ids: Sequence[int]) -> dict[int, list[StoredEnvelope]]:
        """The signed events of each cycle, oldest first."""
        me, r = t.mobility_events.c, t.records.c
        out: dict[int, list[StoredEnvelope]] = {cid: [] for cid in cycle_ids}
        for chunk in chunks(list(cycle_ids), 500):
            query = (
                select(me.cycle_id, *ENVELOPE_COLUMNS)
                .select_from(t.mobility_events)
                .join(t.records, r.id == me.record_pk)
                .join(t.envelopes, t.envelopes.c.id == r.envelope_id)
                .where(me.cycle_id.in_(chunk))
                .order_by(me.cycle_id, me.record_pk)
            )
            for row in self.conn.execute(query):
                out[row[0]].append(stored(row[1:]))
        return out
