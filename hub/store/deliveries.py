"""Deliveries: what is routed to whom, in sequence, and each recipient's cursor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    case,
    func,
    insert,
    select,
    update,
)

from hub.domain.stored import (
    DeliveryRow,
)
from hub.store import schema as t
from hub.store.sql import (
    DELIVERY_LOCK,
    ENVELOPE_COLUMNS,
    Repository,
    stored,
)


class DeliveryRepository(Repository):
    """Deliveries: what is routed to whom, in sequence, and each recipient's cursor."""

    def add(self, rows: Sequence[tuple[str, int, int]], now_us: int) -> None:
        """Route envelopes: ``rows`` are (recipient_id, kind, envelope_id)."""
        if not rows:
            return
        if not self.is_sqlite:
            # Sequence numbers must become visible in order: serialise the
            # transactions that allocate them, so that no reader skips a lower
            # number committed after a higher one.
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DELIVERY_LOCK})")
        self.conn.execute(
            insert(t.deliveries),
            [{"recipient_id": r, "kind": k, "envelope_id": e, "routed_at_us": now_us} for r, k, e in rows],
        )

    def cursor(self, recipient_id: str) -> int:
        """The recipient's last acknowledged sequence (0 if none)."""
        value = self.conn.execute(
            select(t.delivery_cursors.c.acked_seq).where(t.delivery_cursors.c.recipient_id == recipient_id)
        ).scalar()
        return int(value or 0)

    def last_sequence(self, recipient_id: str) -> int:
        """The recipient's highest delivery sequence (0 if none)."""
        d = t.deliveries.c
        value = self.conn.execute(
            select(d.seq).where(d.recipient_id == recipient_id).order_by(d.seq.desc()).limit(1)
        ).scalar()
        return int(value or 0)

    def advance_cursor(self, recipient_id: str, seq: int) -> int:
        """Move the cursor forward to ``seq`` (never backward). Returns the cursor after the call."""
        c = t.delivery_cursors.c
        moved = self.conn.execute(
            update(t.delivery_cursors)
            .where(c.recipient_id == recipient_id, c.acked_seq < seq)
            .values(acked_seq=seq)
        ).rowcount
        if not moved:
            present = self.conn.execute(select(c.acked_seq).where(c.recipient_id == recipient_id)).scalar()
            if present is None:
                self.conn.execute(insert(t.delivery_cursors).values(recipient_id=recipient_id, acked_seq=seq))
        return self.cursor(recipient_id)

    def between(self, recipient_id: str, after_seq: int, up_to_seq: int, kind: int) -> list[DeliveryRow]:
        """The recipient's deliveries of ``kind`` with after_seq < sequence <= up_to_seq."""
        d = t.deliveries.c
        return self._page(recipient_id, after_seq, d.seq <= up_to_seq, d.kind == kind)

    def overdue(self, kind: int, routed_before_us: int) -> dict[str, int]:
        """Per recipient, deliveries of ``kind`` routed before the time and not acknowledged yet."""
        d, c = t.deliveries.c, t.delivery_cursors.c
        cursor = select(c.acked_seq).where(c.recipient_id == d.recipient_id).scalar_subquery()
        query = (
            select(d.recipient_id, func.count())
            .where(d.kind == kind, d.routed_at_us < routed_before_us, d.seq > func.coalesce(cursor, 0))
            .group_by(d.recipient_id)
        )
        return {r: int(n) for r, n in self.conn.execute(query)}

    def after(self, recipient_id: str, after_seq: int, limit: int) -> list[DeliveryRow]:
        """The recipient's deliveries with sequence above ``after_seq``, oldest first."""
        return self._page(recipient_id, after_seq, limit=limit)

    def _page(
        self, recipient_id: str, after_seq: int, *conditions: Any, limit: int | None = None
    ) -> list[DeliveryRow]:
        d = t.deliveries.c
        query = (
            select(d.seq, d.kind, d.routed_at_us, *ENVELOPE_COLUMNS)
            .join(t.envelopes, t.envelopes.c.id == d.envelope_id)
            .where(d.recipient_id == recipient_id, d.seq > after_seq, *conditions)
            .order_by(d.seq)
            .limit(limit)
        )
        return [DeliveryRow(row[0], row[1], row[2], stored(row[3:])) for row in self.conn.execute(query)]

    def backlogs(self) -> dict[str, int]:
        """Deliveries routed to each recipient and not yet acknowledged (0 for one that is up to date)."""
        d, cur = t.deliveries.c, t.delivery_cursors.c
        pending = case((d.seq > func.coalesce(cur.acked_seq, 0), 1), else_=0)
        query = (
            select(d.recipient_id, func.sum(pending))
            .select_from(t.deliveries.outerjoin(t.delivery_cursors, cur.recipient_id == d.recipient_id))
            .group_by(d.recipient_id)
        )
        return {recipient: int(n) for recipient, n in self.conn.execute(query)}
