"""Delivery: each participant reads what was routed to it, from a durable cursor, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator

from hub.clock import Clock, to_us
from hub.domain.audit import AuditDraft
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Participant
from hub.domain.stored import DeliveryRow
from hub.errors import InvalidRequestError
from hub.services.privacy import Sealer
from hub.store.engine import Store

FETCH_LIMIT = 100


class DeliveryNotifier:
    """Wakes the Subscribe streams of this process when a publication routed something.

    Publications notify from worker threads; streams wait on the server's event loop, each
    holding a future rather than a thread. Streams also poll the store every ``poll_seconds``,
    so that deliveries made by another hub process on the same database arrive too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.closed = False

    def notify(self) -> None:
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_wake, future)

    def generation(self) -> int:
        with self._lock:
            return self._generation

    async def wait(self, seen: int, timeout: float) -> None:
        """Wait until something was routed after generation ``seen``, the timeout, or close."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            if self._generation != seen or self.closed:
                return
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def close(self) -> None:
        """Release every waiting stream (server shutdown)."""
        self.closed = True
        self.notify()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DeliveryService:
    """Streams deliveries and moves cursors."""

    def __init__(
        self, store: Store, notifier: DeliveryNotifier, poll_seconds: float, clock: Clock, sealer: Sealer
    ) -> None:
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.poll_seconds = poll_seconds
        self.sealer = sealer

    async def stream(
        self, caller: Participant, after_sequence: int | None, stop_when_drained: bool
    ) -> AsyncIterator[DeliveryRow]:
        """Yield the caller's deliveries after ``after_sequence`` (default: its durable cursor).

        Ends when drained if ``stop_when_drained``, else when the server shuts down; the client
        going away cancels it. Store reads run on the loop's executor; waiting holds no thread.
        Raises StoreUnavailableError.
        """
        if after_sequence is None:
            after_sequence = await asyncio.to_thread(self._cursor, caller.id)
        position = after_sequence
        while not self.notifier.closed:
            seen = self.notifier.generation()
            rows, read_up_to, full = await asyncio.to_thread(self._after, caller.id, position)
            for row in rows:
                yield row
            position = read_up_to
            if full:
                continue
            if stop_when_drained:
                return
            await self.notifier.wait(seen, self.poll_seconds)

    def _cursor(self, participant_id: str) -> int:
        with self.store.unit_of_work() as uow:
            return uow.deliveries.cursor(participant_id)

    def _after(self, participant_id: str, position: int) -> tuple[list[DeliveryRow], int, bool]:
        """The next deliveries with sealed records opened, the last sequence read, and whether
        the page was full. A record sealed with a destroyed key (its candidate was erased before
        the recipient read it) is skipped: its deletion notice follows."""
        with self.store.unit_of_work() as uow:
            rows = uow.deliveries.after(participant_id, position, FETCH_LIMIT)
        records = [i for i, row in enumerate(rows) if row.kind == DeliveryKind.RECORD]
        opened = self.sealer.open([rows[i].envelope for i in records])
        clear = dict(zip(records, opened, strict=True))
        out = [
            row if i not in clear else dataclasses.replace(row, envelope=clear[i])  # type: ignore[arg-type]
            for i, row in enumerate(rows)
            if i not in clear or clear[i] is not None
        ]
        return out, rows[-1].seq if rows else position, len(rows) == FETCH_LIMIT

    def acknowledge(self, caller: Participant, sequence: int) -> int:
        """Move the caller's cursor forward to ``sequence``. Returns the cursor.

        Raises InvalidRequestError if ``sequence`` is beyond the caller's last
        delivery (acknowledging what was never delivered would lose it).
        """
        with self.store.unit_of_work(write=True) as uow:
            last = uow.deliveries.last_sequence(caller.id)
            if sequence > last:
                raise InvalidRequestError(
                    f"sequence {sequence} is beyond the last delivery to {caller.id!r} ({last})", "sequence"
                )
            before = uow.deliveries.cursor(caller.id)
            cursor = uow.deliveries.advance_cursor(caller.id, sequence)
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
                for row in uow.deliveries.between(caller.id, before, cursor, DeliveryKind.DELETION)
            ]
            uow.audit.append(drafts, to_us(self.clock()))
            uow.commit()
        return cursor
