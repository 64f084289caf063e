"""The audit log (a hash chain) and its signed checkpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from sqlalchemy import (
    func,
    insert,
    select,
)

from hub.domain import audit
from hub.domain.audit import AuditDraft
from hub.store import schema as t
from hub.store.sql import (
    AUDIT_LOCK,
    Repository,
)


class AuditRepository(Repository):
    """The audit log (a hash chain) and its signed checkpoints."""

    def append(self, drafts: Sequence[AuditDraft], at_us: int) -> None:
        """Append entries to the hash chain, in this transaction (rolled back with it)."""
        if not drafts:
            return
        if not self.is_sqlite:
            # One appender at a time: each entry hashes the one before it.
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
        a = t.audit_log.c
        last = self.conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
        seq, prev = (last[0], last[1]) if last else (0, audit.GENESIS)
        rows = []
        for d in drafts:
            seq += 1
            digest = audit.chain_hash(prev, seq, at_us, d)
            rows.append(
                {
                    "seq": seq,
                    "at_us": at_us,
                    "actor": d.actor,
                    "action": d.action,
                    "origin_id": d.origin_id,
                    "payload_type": d.payload_type,
                    "record_id": d.record_id,
                    "version": d.version,
                    "consent_record_id": d.consent_record_id,
                    "purpose": d.purpose,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        self._insert_many(t.audit_log, rows)

    def entries(
        self, origin_id: str | None = None, consent_record_id: str | None = None
    ) -> Iterator[audit.AuditEntry]:
        """Entries in sequence order (all, or those of one subject)."""
        a = t.audit_log.c
        query = select(t.audit_log).order_by(a.seq)
        if origin_id is not None:
            query = query.where(a.origin_id == origin_id, a.consent_record_id == consent_record_id)
        for r in self.conn.execute(query):
            yield audit.AuditEntry(
                r.seq,
                r.at_us,
                audit.AuditDraft(
                    r.actor,
                    r.action,
                    r.origin_id,
                    r.payload_type,
                    r.record_id,
                    r.version,
                    r.consent_record_id,
                    r.purpose,
                ),
                r.prev_hash,
                r.hash,
            )

    def last(self) -> tuple[int, bytes] | None:
        a = t.audit_log.c
        row = self.conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
        return (row[0], row[1]) if row else None

    def checkpoints(self) -> list[audit.Checkpoint]:
        c = t.audit_checkpoints.c
        return [
            audit.Checkpoint(r.seq, r.hash, r.at_us, r.key_id, r.signature)
            for r in self.conn.execute(select(t.audit_checkpoints).order_by(c.seq))
        ]

    def add_checkpoint(self, cp: audit.Checkpoint) -> None:
        self.conn.execute(
            insert(t.audit_checkpoints).values(
                seq=cp.seq, hash=cp.hash, at_us=cp.at_us, key_id=cp.key_id, signature=cp.signature
            )
        )

    def add_checkpoint_envelope(self, cp: audit.Checkpoint, signer_id: str, payload: bytes) -> int:
        """Keep a signed checkpoint as an envelope (not a record: no participant published it), so
        that it is delivered like one. Returns the envelope id."""
        seconds, micros = divmod(cp.at_us, 1_000_000)
        return int(
            self.conn.execute(
                insert(t.envelopes).values(
                    origin_id="",
                    payload_type=audit.CHECKPOINT_PAYLOAD_TYPE,
                    record_id=f"checkpoint-{cp.seq}",
                    version=1,
                    payload=payload,
                    payload_sha256=hashlib.sha256(payload).digest(),
                    signer_id=signer_id,
                    key_id=cp.key_id,
                    signature=cp.signature,
                    signed_at_seconds=seconds,
                    signed_at_nanos=micros * 1000,
                    received_at_us=cp.at_us,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )

    def disclosed_to(self, origin_id: str, consent_record_id: str) -> list[str]:
        """Participants other than the origin that were disclosed records of this candidate."""
        a = t.audit_log.c
        query = (
            select(a.actor)
            .distinct()
            .where(
                a.origin_id == origin_id,
                a.consent_record_id == consent_record_id,
                a.action.in_([d.value for d in audit.Disclosure]),
                a.actor != origin_id,
            )
        )
        return sorted(self.conn.execute(query).scalars())

    def personal_releases(self, origin_id: str, consent_record_id: str) -> dict[str, list[str]]:
        """The personal views of this candidate released to participants, by record id: who
        received each (sorted)."""
        a = t.audit_log.c
        query = (
            select(a.record_id, a.actor)
            .distinct()
            .where(
                a.origin_id == origin_id,
                a.consent_record_id == consent_record_id,
                a.action == audit.Disclosure.PERSONAL.value,
            )
        )
        out: dict[str, list[str]] = {}
        for record_id, actor in self.conn.execute(query):
            out.setdefault(record_id, []).append(actor)
        return {record_id: sorted(actors) for record_id, actors in out.items()}

    def last_checkpoint_us(self) -> int | None:
        c = t.audit_checkpoints.c
        return self.conn.execute(select(func.max(c.at_us))).scalar()

    def first_us(self) -> int | None:
        a = t.audit_log.c
        return self.conn.execute(select(func.min(a.at_us))).scalar()
