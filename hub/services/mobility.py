"""The read side of the mobility cycle: a cycle and its signed events, for its parties only.

Events are written by ExchangeService.Publish (which checks the state machine
in hub.domain.mobility); this service reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.domain.directory import Participant
from hub.errors import NotFoundError
from hub.services.paging import decode_token, encode_token, page_size_of
from hub.store.store import CycleRow, Store, StoredEnvelope


@dataclass(frozen=True)
class Cycle:
    row: CycleRow
    events: list[StoredEnvelope]


class MobilityReader:
    """Cycles, as their parties see them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, caller: Participant, origin_id: str, application_id: str) -> Cycle:
        """One cycle with its events. Raises NotFoundError, the same for "absent" and "not a party"."""
        with self.store.unit_of_work() as uow:
            rows = uow.cycles_of(caller.id, cycle=(origin_id, application_id), limit=1)
            if not rows:
                raise NotFoundError(f"no cycle {application_id!r} of {origin_id!r} for this participant")
            return Cycle(rows[0], uow.cycle_events([rows[0].id])[rows[0].id])

    def list(
        self, caller: Participant, profile_record_id: str, state: int, page_size: int, page_token: str
    ) -> tuple[list[Cycle], str]:
        """The caller's cycles, newest first. Returns (cycles, next page token)."""
        size = page_size_of(page_size)
        before = (decode_token(page_token, "c", 1) or (0,))[0]
        with self.store.unit_of_work() as uow:
            rows = uow.cycles_of(caller.id, profile_record_id, state, before, size + 1)
            page = rows[:size]
            events = uow.cycle_events([r.id for r in page])
        token = encode_token("c", page[-1].id) if len(rows) > size else ""
        return [Cycle(r, events[r.id]) for r in page], token
