"""The audit log as a service: checkpoints signed by the hub, verification, the subject's report."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

from hub.clock import Clock, to_us
from hub.domain import audit, signing
from hub.domain.audit import AuditEntry, Checkpoint
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Participant
from hub.domain.tokens import SCOPES_BY_KIND, HubKeyRing
from hub.errors import InvalidRequestError
from hub.services.delivery import DeliveryNotifier
from hub.store.engine import Store
from hub.store.uow import UnitOfWork

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
    def __init__(
        self, store: Store, keys: HubKeyRing, clock: Clock, notifier: DeliveryNotifier | None = None
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.notifier = notifier

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head of the log if it moved since the last checkpoint, and deliver it to every
        active participant that subscribes (its witnesses). Returns the new checkpoint."""
        now_us = to_us(self.clock())
        key = self.keys.signing
        with self.store.unit_of_work(write=True) as uow:
            head = uow.audit.last()
            done = uow.audit.checkpoints()
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
            uow.audit.add_checkpoint(cp)
            envelope_id = uow.audit.add_checkpoint_envelope(
                cp, CHECKPOINT_SIGNER, audit.checkpoint_payload(cp.seq, cp.hash)
            )
            uow.deliveries.add(
                [(pid, DeliveryKind.AUDIT_CHECKPOINT, envelope_id) for pid in _witnesses(uow)], now_us
            )
            uow.commit()
        if self.notifier is not None:
            self.notifier.notify()
        return cp

    def verify(self, witnessed: Sequence[audit.Witnessed] = ()) -> tuple[int, list[str]]:
        """Check the whole chain, every checkpoint, and the checkpoints participants kept.
        Returns (entries, problems)."""

        def signed(cp: Checkpoint) -> bool:
            key = self.keys.keys.get(cp.key_id)
            # Checkpoints signed before the low-S rule are kept as they were signed (docs/signing.md).
            message = checkpoint_message(cp)
            return key is not None and signing.verify(
                key.public_key, cp.signature, message, allow_high_s=True
            )

        with self.store.unit_of_work() as uow:
            return audit.verify_log(uow.audit.entries(), uow.audit.checkpoints(), signed, witnessed)

    def subject_report(self, caller: Participant, consent_record_id: str) -> list[AuditEntry]:
        """Every entry about one of the caller's candidates, oldest first."""
        if not consent_record_id:
            raise InvalidRequestError("consent_record_id is required", "consent_record_id")
        with self.store.unit_of_work() as uow:
            return list(uow.audit.entries(caller.id, consent_record_id))


def _witnesses(uow: UnitOfWork) -> list[str]:
    """Who keeps the checkpoints: every active participant that may subscribe to deliveries."""
    participants, _keys, _revoked = uow.directory.contents()
    return sorted(p.id for p in participants if p.active and "subscribe" in SCOPES_BY_KIND[p.kind])


def read_witness(path: Path) -> list[audit.Witnessed]:
    """The checkpoints a gateway kept (witness.jsonl, one JSON object a line). Raises ValueError
    naming the line that cannot be read."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            cp = Checkpoint(
                int(item["sequence"]),
                bytes.fromhex(item["entry_hash"]),
                int(item["signed_at_us"]),
                str(item["key_id"]),
                base64.b64decode(item["signature"], validate=True),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}:{n}: not a checkpoint the gateway wrote ({type(exc).__name__})"
            ) from None
        out.append(audit.Witnessed(cp, f"{path.name}:{n}"))
    return out
