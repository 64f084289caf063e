"""The read side of the mobility cycle: a cycle and its signed events, for its parties only.

Events are written by ExchangeService.Publish (which checks the state machine
in hub.domain.mobility); this service reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.domain.directory import Participant
from hub.domain.stored import CycleRow, StoredEnvelope
from hub.errors import NotFoundError
from hub.services.paging import decode_token, encode_token, page_size_of
from hub.services.privacy import Sealer
from hub.store.engine import Store


@dataclass(frozen=True)
class Cycle:
    row: CycleRow
    events: list[StoredEnvelope]


class MobilityReader:
    """Cycles, as their parties see them."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self.store = store
        self.sealer = sealer

    def _opened(self, events: list[StoredEnvelope]) -> list[StoredEnvelope]:
        """Events are sealed with the candidate's data key: opened here, and gone once erased."""
        return [e for e in self.sealer.open(events) if e is not None]

    def get(self, caller: Participant, origin_id: str, application_id: str) -> Cycle:
        """One cycle with its events. Raises NotFoundError, the same for "absent", "not a party"
        and "its candidate was erased"."""
        with self.store.unit_of_work() as uow:
            rows = uow.cycles.of_party(caller.id, cycle=(origin_id, application_id), limit=1)
            if not rows:
                raise NotFoundError(f"no cycle {application_id!r} of {origin_id!r} for this participant")
            events = uow.cycles.events([rows[0].id])[rows[0].id]
        return Cycle(rows[0], self._opened(events))

    def list(
        self, caller: Participant, profile_record_id: str, state: int, page_size: int, page_token: str
    ) -> tuple[list[Cycle], str]:
        """The caller's cycles, newest first. Returns (cycles, next page token)."""
        size = page_size_of(page_size)
        before = (decode_token(page_token, "c", 1) or (0,))[0]
        with self.store.unit_of_work() as uow:
            rows = uow.cycles.of_party(caller.id, profile_record_id, state, before, size + 1)
            page = rows[:size]
            events = uow.cycles.events([r.id for r in page])
        token = encode_token("c", page[-1].id) if len(rows) > size else ""
        return [Cycle(r, self._opened(events[r.id])) for r in page], token
