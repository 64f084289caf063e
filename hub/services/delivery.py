"""Delivery: each participant reads what was routed to it, from a durable cursor, at least once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from hub.clock import Clock, to_us
from hub.domain.audit import AuditDraft
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Participant
from hub.errors import InvalidRequestError
from hub.store.store import DeliveryRow, Store

FETCH_LIMIT = 100


class DeliveryNotifier:
    """Wakes the Subscribe streams of this process when a publication routed something.

    Streams also poll the store every ``poll_seconds``, so that deliveries
    made by another hub process on the same database arrive too.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self.closed = False

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        """Wait until something was routed after generation ``seen``, the timeout, or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen or self.closed, timeout=timeout)

    def close(self) -> None:
        """Release every waiting stream (server shutdown)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class DeliveryService:
    """Streams deliveries and moves cursors."""

    def __init__(self, store: Store, notifier: DeliveryNotifier, poll_seconds: float, clock: Clock) -> None:
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.poll_seconds = poll_seconds

    def stream(
        self,
        caller: Participant,
        after_sequence: int | None,
        stop_when_drained: bool,
        is_active: Callable[[], bool],
    ) -> Iterator[DeliveryRow]:
        """Yield the caller's deliveries after ``after_sequence`` (default: its durable cursor).

        Ends when drained if ``stop_when_drained``, else when the client goes
        away or the server shuts down. Raises StoreUnavailableError.
        """
        if after_sequence is None:
            with self.store.unit_of_work() as uow:
                after_sequence = uow.cursor(caller.id)
        position = after_sequence
        while is_active() and not self.notifier.closed:
            seen = self.notifier.generation()
            with self.store.unit_of_work() as uow:
                rows = uow.deliveries_after(caller.id, position, FETCH_LIMIT)
            for row in rows:
                yield row
                position = row.seq
            if len(rows) == FETCH_LIMIT:
                continue
            if stop_when_drained:
                return
            self.notifier.wait(seen, self.poll_seconds)

    def acknowledge(self, caller: Participant, sequence: int) -> int:
        """Move the caller's cursor forward to ``sequence``. Returns the cursor.

        Raises InvalidRequestError if ``sequence`` is beyond the caller's last
        delivery (acknowledging what was never delivered would lose it).
        """
        with self.store.unit_of_work(write=True) as uow:
            last = uow.last_sequence(caller.id)
            if sequence > last:
                raise InvalidRequestError(
                    f"sequence {sequence} is beyond the last delivery to {caller.id!r} ({last})", "sequence"
                )
            before = uow.cursor(caller.id)
            cursor = uow.advance_cursor(caller.id, sequence)
            # Acknowledging a deletion notice is the recipient's statement that it deleted the data.
            drafts = [
                AuditDraft(
                    caller.id,
                    "deletion.acknowledged",
                    row.envelope.origin_id,
                    row.envelope.payload_type,
                    row.envelope.record_id,
                    row.envelope.version,
                    row.envelope.record_id,
                )
                for row in uow.deliveries_between(caller.id, before, cursor, DeliveryKind.DELETION)
            ]
            uow.append_audit(drafts, to_us(self.clock()))
            uow.commit()
        return cursor
