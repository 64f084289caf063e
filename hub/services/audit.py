"""The audit log as a service: checkpoints signed by the hub, verification, the subject's report."""

from __future__ import annotations

from hub.clock import Clock, to_us
from hub.domain import audit, signing
from hub.domain.audit import AuditEntry, Checkpoint
from hub.domain.directory import Participant
from hub.domain.tokens import HubKeyRing
from hub.errors import InvalidRequestError
from hub.store.store import Store

CHECKPOINT_SIGNER = "hub"


def checkpoint_message(cp: Checkpoint) -> bytes:
    seconds, micros = divmod(cp.at_us, 1_000_000)
    return signing.signing_input(
        audit.CHECKPOINT_TYPE,
        CHECKPOINT_SIGNER,
        cp.key_id,
        seconds,
        micros * 1000,
        audit.checkpoint_payload(cp.seq, cp.hash),
    )


class AuditService:
    def __init__(self, store: Store, keys: HubKeyRing, clock: Clock) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head of the log if it moved since the last checkpoint. Returns the new checkpoint."""
        now_us = to_us(self.clock())
        key = self.keys.signing
        with self.store.unit_of_work(write=True) as uow:
            head = uow.last_audit()
            done = uow.checkpoints()
            if head is None or (done and done[-1].seq >= head[0]):
                return None
            unsigned = Checkpoint(head[0], head[1], now_us, key.key_id, b"")
            cp = Checkpoint(
                head[0],
                head[1],
                now_us,
                key.key_id,
                signing.sign(key.private_key, checkpoint_message(unsigned)),
            )
            uow.add_checkpoint(cp)
            uow.commit()
        return cp

    def verify(self) -> tuple[int, list[str]]:
        """Check the whole chain and every checkpoint. Returns (entries, problems)."""

        def signed(cp: Checkpoint) -> bool:
            key = self.keys.keys.get(cp.key_id)
            return key is not None and signing.verify(key.public_key, cp.signature, checkpoint_message(cp))

        with self.store.unit_of_work() as uow:
            return audit.verify_log(uow.audit_entries(), uow.checkpoints(), signed)

    def subject_report(self, caller: Participant, consent_record_id: str) -> list[AuditEntry]:
        """Every entry about one of the caller's candidates, oldest first."""
        if not consent_record_id:
            raise InvalidRequestError("consent_record_id is required", "consent_record_id")
        with self.store.unit_of_work() as uow:
            return list(uow.audit_entries(caller.id, consent_record_id))
