"""Publication: verify every envelope, parse and validate it, store the good ones, route them.

One batch is one transaction: either every accepted record of the batch is
stored with its routing, or (database failure) none is and the caller retries
the whole batch; idempotency on (origin, type, record id, version) makes the
retry safe. A record refused for its own content never affects the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from hub.clock import Clock, to_us
from hub.domain import envelopes as env_rules
from hub.domain import records
from hub.domain.directory import Directory, Participant, SigningKey
from hub.domain.envelopes import Envelope
from hub.domain.records import PayloadKind, Reason, RecordRejection
from hub.errors import LimitExceededError
from hub.metrics import HubMetrics
from hub.services.delivery import DeliveryNotifier
from hub.services.directory import DirectoryProvider
from hub.store.store import NewRecord, Store

DELIVERY_KIND_RECORD = 1  # spehub.v1.DeliveryKind.DELIVERY_KIND_RECORD
PARALLEL_VERIFY_MIN = 16


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class RecordResult:
    """What became of one envelope of a batch."""

    index: int
    kind: PayloadKind | None
    record_id: str = ""
    version: int = 0
    outcome: Outcome = Outcome.REJECTED
    reason: Reason | None = None
    field: str = ""
    message: str = ""


class SignatureVerifier:
    """Verifies envelopes on a thread pool: cryptography releases the GIL, so both cores work."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify")

    def verify_all(
        self, items: Sequence[tuple[Envelope, PayloadKind, SigningKey]]
    ) -> list[RecordRejection | None]:
        """One entry per item: None if its signature verifies, else the rejection."""
        if len(items) < PARALLEL_VERIFY_MIN or self.threads == 1:
            return _verify_chunk(items)
        size = -(-len(items) // self.threads)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        out: list[RecordRejection | None] = []
        for part in self._pool.map(_verify_chunk, chunks):
            out.extend(part)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _verify_chunk(items: Sequence[tuple[Envelope, PayloadKind, SigningKey]]) -> list[RecordRejection | None]:
    out: list[RecordRejection | None] = []
    for env, kind, key in items:
        try:
            env_rules.verify(env, kind, key)
            out.append(None)
        except RecordRejection as exc:
            out.append(exc)
    return out


class ExchangeService:
    """Publishes batches of signed records."""

    def __init__(
        self,
        store: Store,
        directories: DirectoryProvider,
        clock: Clock,
        metrics: HubMetrics,
        verifier: SignatureVerifier,
        notifier: DeliveryNotifier,
        max_batch_records: int,
        clock_skew: timedelta,
    ) -> None:
        self.store = store
        self.directories = directories
        self.clock = clock
        self.metrics = metrics
        self.verifier = verifier
        self.notifier = notifier
        self.max_batch_records = max_batch_records
        self.clock_skew = clock_skew

    def publish(self, caller: Participant, batch: Sequence[Envelope]) -> list[RecordResult]:
        """Verify, validate, store and route one batch. Returns one result per envelope, in order.

        Raises LimitExceededError if the batch is larger than allowed, and
        StoreUnavailableError if the database fails (nothing stored then).
        """
        if len(batch) > self.max_batch_records:
            raise LimitExceededError(
                f"batch of {len(batch)} envelopes is over the limit of {self.max_batch_records}; split it"
            )
        now = self.clock()
        # Read once per batch: a key revoked or a participant suspended now applies from the next batch.
        directory = self.directories.current()
        results: list[RecordResult | None] = [None] * len(batch)
        to_verify: list[tuple[int, Envelope, PayloadKind, SigningKey]] = []
        for i, env in enumerate(batch):
            try:
                kind, key = env_rules.precheck(env, caller, directory, now, self.clock_skew)
            except RecordRejection as exc:
                results[i] = _rejected(i, None, exc)
                continue
            to_verify.append((i, env, kind, key))

        verdicts = self.verifier.verify_all([(env, kind, key) for _, env, kind, key in to_verify])
        parsed: list[tuple[int, Envelope, records.ParsedRecord]] = []
        for (i, env, kind, _key), verdict in zip(to_verify, verdicts, strict=True):
            if verdict is not None:
                results[i] = _rejected(i, kind, verdict)
                continue
            try:
                rec = records.parse(kind, env.payload)
                env_rules.check_origin(rec, env)
            except RecordRejection as exc:
                results[i] = _rejected(i, kind, exc)
                continue
            parsed.append((i, env, rec))

        if parsed:
            self._store(caller, directory, parsed, results, to_us(now))
        final = [r for r in results if r is not None]
        assert len(final) == len(batch)
        self._count(caller, final)
        return final

    def _store(
        self,
        caller: Participant,
        directory: Directory,
        parsed: list[tuple[int, Envelope, records.ParsedRecord]],
        results: list[RecordResult | None],
        now_us: int,
    ) -> None:
        accepted: list[tuple[int, NewRecord]] = []
        routes: list[tuple[int, list[str]]] = []
        with self.store.unit_of_work(write=True) as uow:
            stored, current = uow.versions_of(caller.id, (rec.record_id for _, _, rec in parsed))
            latest = {key: version for key, (_pk, version) in current.items()}
            for i, env, rec in parsed:
                item = NewRecord(env, rec)
                ptype = rec.kind.payload_type
                existing_sha = stored.get((ptype, rec.record_id, rec.version))
                if existing_sha is not None:
                    if existing_sha == item.sha256:
                        results[i] = RecordResult(i, rec.kind, rec.record_id, rec.version, Outcome.DUPLICATE)
                    else:
                        results[i] = _rejected(
                            i,
                            rec.kind,
                            RecordRejection(
                                Reason.VERSION_CONFLICT,
                                f"version {rec.version} of record {rec.record_id!r} was already published with "
                                "different content; publish it as a new version",
                                "header.version",
                            ),
                            rec,
                        )
                    continue
                newest = latest.get((ptype, rec.record_id), 0)
                if rec.version < newest:
                    results[i] = _rejected(
                        i,
                        rec.kind,
                        RecordRejection(
                            Reason.STALE_VERSION,
                            f"record {rec.record_id!r} is already at version {newest}; "
                            f"version {rec.version} is older",
                            "header.version",
                        ),
                        rec,
                    )
                    continue
                stored[(ptype, rec.record_id, rec.version)] = item.sha256
                latest[(ptype, rec.record_id)] = rec.version
                accepted.append((i, item))
                results[i] = RecordResult(i, rec.kind, rec.record_id, rec.version, Outcome.ACCEPTED)
                if isinstance(rec.index, records.OfferIndex):
                    recipients = [
                        p.id
                        for p in directory.origin_spes_in(rec.index.target_countries)
                        if p.id != caller.id
                    ]
                    if recipients:
                        routes.append((len(accepted) - 1, recipients))
            envelope_ids = uow.add_records([item for _, item in accepted], current, now_us)
            deliveries = [
                (recipient, DELIVERY_KIND_RECORD, envelope_ids[pos]) for pos, rs in routes for recipient in rs
            ]
            uow.add_deliveries(deliveries, now_us)
            uow.commit()
        for recipient, _, _ in deliveries:
            self.metrics.deliveries_routed.labels(recipient).inc()
        if deliveries:
            self.notifier.notify()

    def _count(self, caller: Participant, results: list[RecordResult]) -> None:
        for r in results:
            kind = r.kind.name.lower() if r.kind else "unknown"
            self.metrics.records.labels(caller.id, kind, r.outcome.value).inc()
            if r.reason is not None:
                self.metrics.rejections.labels(caller.id, r.reason.value.lower()).inc()


def _rejected(i: int, kind: PayloadKind | None, exc: RecordRejection, rec: Any = None) -> RecordResult:
    return RecordResult(
        index=i,
        kind=kind,
        record_id=rec.record_id if rec else "",
        version=rec.version if rec else 0,
        outcome=Outcome.REJECTED,
        reason=exc.reason,
        field=exc.field,
        message=exc.message,
    )
