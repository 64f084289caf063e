"""Publication: verify every envelope, parse and validate it, store the good ones, route them.

One batch is one transaction: either every accepted record of the batch is
stored with its routing, or (database failure) none is and the caller retries
the whole batch; idempotency on (origin, type, record id, version) makes the
retry safe. A record refused for its own content never affects the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from spehub.v1 import consent_pb2

from hub.clock import Clock, from_us, to_us
from hub.domain import consent_policy, mobility, records
from hub.domain import envelopes as env_rules
from hub.domain.audit import AuditDraft
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Directory, Participant, SigningKey
from hub.domain.envelopes import Envelope
from hub.domain.records import PayloadKind, Reason, RecordRejection
from hub.domain.stored import Audience, CycleRow, NewRecord
from hub.errors import LimitExceededError, StoreConflictError
from hub.metrics import HubMetrics
from hub.services.delivery import DeliveryNotifier
from hub.services.directory import DirectoryProvider
from hub.services.operations import StatisticsKeeper
from hub.services.privacy import Sealer, consent_of
from hub.store.engine import Store
from hub.store.uow import UnitOfWork

PARALLEL_VERIFY_MIN = 16
CONFLICT_RETRIES = 3


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


@dataclass
class PreparedBatch:
    """A batch verified and parsed, waiting to be stored: the rejected envelopes already have their
    result, the others are in ``parsed``."""

    caller: Participant
    directory: Directory
    now: datetime
    parsed: list[tuple[int, Envelope, records.ParsedRecord]]
    results: list[RecordResult | None]


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
        sealer: Sealer,
        consent_default: timedelta = timedelta(days=365),
        consent_max: timedelta = timedelta(days=730),
        statistics: StatisticsKeeper | None = None,
    ) -> None:
        self.statistics = statistics
        self.sealer = sealer
        self.consent_default = consent_default
        self.consent_max = consent_max
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
        return self.store_prepared(self.prepare(caller, batch))

    def prepare(self, caller: Participant, batch: Sequence[Envelope]) -> PreparedBatch:
        """The part of a publication that needs no database: signatures verified, records parsed and
        validated against the directory as it is now. A stream prepares its next batch while the
        current one is stored (hub.api.servicers). Raises LimitExceededError."""
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
                if isinstance(rec.index, records.ConsentIndex):
                    rec = self._consent_policy(caller, directory, rec, now)
            except RecordRejection as exc:
                results[i] = _rejected(i, kind, exc)
                continue
            parsed.append((i, env, rec))
        return PreparedBatch(caller, directory, now, parsed, results)

    def store_prepared(self, prepared: PreparedBatch) -> list[RecordResult]:
        """Store and route a prepared batch. Raises StoreUnavailableError (nothing stored then)."""
        caller, results = prepared.caller, prepared.results
        if prepared.parsed:
            # Two hub processes storing the same record at once: the second one's transaction fails on
            # the unique key and is run again, when it sees the record (DUPLICATE) or its newer version.
            for attempt in range(CONFLICT_RETRIES):
                try:
                    self._store(caller, prepared.directory, prepared.parsed, results, to_us(prepared.now))
                    break
                except StoreConflictError:
                    if attempt == CONFLICT_RETRIES - 1:
                        raise
        final = [r for r in results if r is not None]
        assert len(final) == len(results)
        self._count(caller, final)
        if self.statistics is not None:
            self.statistics.written(sum(r.outcome is Outcome.ACCEPTED for r in final))
        return final

    def _consent_policy(
        self, caller: Participant, directory: Directory, rec: records.ParsedRecord, now: datetime
    ) -> records.ParsedRecord:
        """Apply the validity policy, the dates rule and the transfer rules to a consent. Raises
        RecordRejection."""
        idx = rec.index
        assert isinstance(idx, records.ConsentIndex)
        # A withdrawal always passes: it must be possible whatever an earlier version said.
        future = (
            consent_policy.future_date_problem(idx, now)
            if idx.status != consent_pb2.CONSENT_STATUS_WITHDRAWN
            else None
        )
        if future is not None:
            field, why = future
            raise RecordRejection(Reason.INVALID_FIELD, f"{field}: {why}", field)
        until = idx.valid_until or idx.valid_from + self.consent_default
        if until - idx.valid_from > self.consent_max:
            raise RecordRejection(
                Reason.INVALID_FIELD,
                f"valid_until: a consent may last at most {self.consent_max.days} days (hub policy)",
                "valid_until",
            )
        for i, (participant_id, country, basis) in enumerate(idx.recipient_bases):
            if participant_id:
                recipient = directory.participants.get(participant_id)
                if recipient is None:
                    raise RecordRejection(
                        Reason.INVALID_FIELD,
                        f"recipients[{i}].participant_id: {participant_id!r} is not registered",
                        f"recipients[{i}].participant_id",
                    )
                country = recipient.country_code
            problem = consent_policy.transfer_problem(caller.country_code, country, basis)
            if problem:
                raise RecordRejection(
                    Reason.INVALID_FIELD,
                    f"recipients[{i}].transfer_basis: {problem}",
                    f"recipients[{i}].transfer_basis",
                )
        return dataclasses.replace(rec, index=dataclasses.replace(idx, valid_until=until))

    def _store(
        self,
        caller: Participant,
        directory: Directory,
        parsed: list[tuple[int, Envelope, records.ParsedRecord]],
        results: list[RecordResult | None],
        now_us: int,
    ) -> None:
        """Store a batch in one transaction: versions checked, mobility steps taken, records routed,
        erasures cascaded and everything audited; or nothing, on StoreUnavailableError."""
        # Candidate records are sealed with their data key before anything is compared or stored.
        items = self.sealer.seal([NewRecord(env, rec) for _, env, rec in parsed])
        erasures = {
            rec.record_id
            for _, _, rec in parsed
            if isinstance(rec.index, records.ConsentIndex) and rec.index.erasure_requested
        }
        # Destroy the keys first: whatever happens to the batch, the data is unreadable from here on.
        for consent_id in sorted(erasures):
            self.sealer.erase(caller.id, consent_id)
        with self.store.unit_of_work(write=True) as uow:
            batch = _Batch(uow, caller, [rec for _, _, rec in parsed])
            for (i, _env, rec), item in zip(parsed, items, strict=True):
                results[i] = self._accept(uow, batch, directory, i, rec, item, now_us)
            envelope_ids = uow.records.add([item for _, item in batch.accepted], batch.current, now_us)
            self._index_events(uow, caller.id, batch.events)
            deliveries = [
                (recipient, DeliveryKind.RECORD, envelope_ids[pos])
                for pos, rs in batch.routes
                for recipient in rs
            ]
            for pos, (_, item) in enumerate(batch.accepted):
                if item.parsed.kind is PayloadKind.CONSENT and item.parsed.record_id in erasures:
                    deliveries += self._erase(uow, caller.id, item.parsed, envelope_ids[pos], now_us)
                    batch.drafts.append(_erasure_done(caller.id, item.parsed))
            uow.deliveries.add(deliveries, now_us)
            uow.audit.append(batch.drafts, now_us)
            uow.commit()
        for recipient, _, _ in deliveries:
            self.metrics.deliveries_routed.labels(recipient).inc()
        if deliveries:
            self.notifier.notify()

    def _accept(
        self,
        uow: UnitOfWork,
        batch: _Batch,
        directory: Directory,
        i: int,
        rec: records.ParsedRecord,
        item: NewRecord,
        now_us: int,
    ) -> RecordResult:
        """One record of the batch: accepted (queued in ``batch`` with its routes and audit), a
        duplicate, or rejected."""
        caller = batch.caller
        cycle = None
        if isinstance(rec.index, records.MobilityEventIndex):
            # An event is about a candidate, whoever records it: sealed with their data key
            # before anything is compared or stored, so that erasing them erases it.
            try:
                item, cycle = self._seal_event(uow, caller, rec.index, item)
            except RecordRejection as exc:
                return _rejected(i, rec.kind, exc, rec)
        verdict = batch.version_verdict(i, rec, item)
        if verdict is not None:
            return verdict
        if isinstance(rec.index, records.ConsentIndex):
            widened = batch.consent_widening(rec.record_id, rec.index)
            if widened is not None:
                return _rejected(i, rec.kind, widened, rec)
        recipients: list[str] = []
        if isinstance(rec.index, records.MobilityEventIndex):
            try:
                cycle_id, parties, subject_origin, candidate_consent = self._mobility_step(
                    uow, caller, directory, rec.index, now_us, cycle
                )
            except RecordRejection as exc:
                return _rejected(i, rec.kind, exc, rec)
            batch.events.append((rec.record_id, cycle_id, rec.index))
            recipients = sorted(parties - {caller.id})
            batch.drafts.append(
                AuditDraft(
                    caller.id,
                    f"mobility.{mobility.name(rec.index.type).lower()}",
                    # Filed under the candidate (its SPE and consent), for the right of access.
                    subject_origin,
                    rec.kind.payload_type,
                    rec.record_id,
                    rec.version,
                    candidate_consent,
                )
            )
        else:
            batch.drafts.extend(_publication_audit(caller.id, rec, consent_of(item), batch.consent_before))
            if isinstance(rec.index, records.ConsentIndex):
                batch.consent_before[rec.record_id] = rec.index.status
            if isinstance(rec.index, records.OfferIndex):
                # An offer goes to the origin SPEs of the countries it is addressed to.
                recipients = [
                    p.id for p in directory.origin_spes_in(rec.index.target_countries) if p.id != caller.id
                ]
        batch.accept(i, item, recipients)
        return RecordResult(i, rec.kind, rec.record_id, rec.version, Outcome.ACCEPTED)

    @staticmethod
    def _index_events(
        uow: UnitOfWork, origin_id: str, events: Sequence[tuple[str, int, records.MobilityEventIndex]]
    ) -> None:
        """File the stored events under their cycles."""
        if not events:
            return
        pks = uow.records.record_pks(
            origin_id, PayloadKind.MOBILITY_EVENT.payload_type, [e[0] for e in events]
        )
        uow.cycles.add_events(
            [
                {
                    "record_pk": pks[record_id],
                    "cycle_id": cycle_id,
                    "type": idx.type,
                    "occurred_on": idx.occurred_on,
                    "reintegration_outcome": idx.reintegration_outcome,
                }
                for record_id, cycle_id, idx in events
            ]
        )

    def _erase(
        self, uow: UnitOfWork, origin_id: str, consent: records.ParsedRecord, envelope_id: int, now_us: int
    ) -> list[tuple[str, DeliveryKind, int]]:
        """Cascade an erasure request: everyone who saw this candidate's records is told to delete
        them, their profiles are withdrawn and their cycles cut. Returns the deliveries to route."""
        deliveries = [
            (recipient, DeliveryKind.DELETION, envelope_id)
            for recipient in uow.audit.disclosed_to(origin_id, consent.record_id)
        ]
        uow.records.withdraw_all(uow.consents.profiles_under(origin_id, consent.record_id), now_us)
        return deliveries + self._erase_cycles(uow, origin_id, consent.record_id, now_us)

    def _seal_event(
        self, uow: UnitOfWork, caller: Participant, idx: records.MobilityEventIndex, item: NewRecord
    ) -> tuple[NewRecord, CycleRow | None]:
        """The event sealed with the data key of the candidate it is about, and its cycle (read once,
        locked for the step that follows; None for a new application). Raises RecordRejection
        UNKNOWN_REFERENCE when there is no such candidate for this caller (no cycle it is a party
        to, no current profile for an application, or a candidate since erased)."""
        cycle = uow.cycles.get(idx.application_origin, idx.application_id, lock=True)
        if cycle is not None and caller.id in (cycle.origin_id, cycle.offer_origin_id):
            subject = (cycle.origin_id, cycle.consent_record_id)
        elif cycle is None and idx.type == mobility.APPLICATION:
            profile_pk = _current_profile(uow, caller, idx.profile_record_id)
            subject = (caller.id, uow.records.profile(profile_pk).consent_record_id)
        else:
            subject = ("", "")
        sealed = self.sealer.seal_for(item, *subject) if subject[1] else None
        if sealed is None:  # no cycle for this caller, or its candidate was erased: the same answer
            raise RecordRejection(
                Reason.UNKNOWN_REFERENCE,
                f"no cycle {idx.application_id!r} of {idx.application_origin!r} that this participant is a party to",
                "application_id",
            )
        return sealed, cycle

    def _erase_cycles(
        self, uow: UnitOfWork, origin_id: str, consent_record_id: str, now_us: int
    ) -> list[tuple[str, DeliveryKind, int]]:
        """Erase the candidate from their mobility cycles: the events (sealed with the key just
        destroyed) are withdrawn, the cycles keep only their counts, and the other party of each
        cycle is told to delete every event of it. Returns those deletion notices."""
        cycles = uow.cycles.under_consent(origin_id, consent_record_id)
        if not cycles:
            return []
        events = uow.cycles.event_records([c.id for c in cycles])
        other = {c.id: c.offer_origin_id for c in cycles if c.offer_origin_id != origin_id}
        uow.records.withdraw_all([pk for _, pk, _, _ in events], now_us)
        uow.cycles.unlink([c.id for c in cycles], [env for _, _, env, _ in events])
        return [(other[cid], DeliveryKind.DELETION, env) for cid, _, env, _ in events if cid in other]

    def _mobility_step(
        self,
        uow: UnitOfWork,
        caller: Participant,
        directory: Directory,
        idx: records.MobilityEventIndex,
        now_us: int,
        cycle: CycleRow | None,
    ) -> tuple[int, set[str], str, str]:
        """Check one cycle event against its cycle (as ``_seal_event`` read and locked it) and move
        the cycle on (in this transaction).

        Returns (cycle id, the cycle's parties, the candidate's SPE, the candidate's consent record id).
        Raises RecordRejection: UNKNOWN_REFERENCE (no such cycle, profile or offer for this
        caller), NOT_ENTITLED (wrong party, or a consent that does not allow the application),
        INVALID_TRANSITION (a step that does not follow).
        """
        if idx.type == mobility.APPLICATION:
            return self._application(uow, caller, directory, idx, now_us)
        parties = set() if cycle is None else {cycle.origin_id, cycle.offer_origin_id}
        if cycle is None or caller.id not in parties:
            raise RecordRejection(
                Reason.UNKNOWN_REFERENCE,
                f"no cycle {idx.application_id!r} of {idx.application_origin!r} that this participant is a party to",
                "application_id",
            )
        roles = frozenset(
            role
            for role, who in (
                (mobility.Party.ORIGIN, cycle.origin_id),
                (mobility.Party.DESTINATION, cycle.offer_origin_id),
            )
            if who == caller.id
        )
        mobility.check_step(idx.type, cycle.state, roles)
        uow.cycles.set_state(cycle.id, idx.type, now_us)
        consent_id = uow.consents.of_profile(cycle.origin_id, cycle.profile_record_id) or ""
        return cycle.id, parties, cycle.origin_id, consent_id

    def _application(
        self,
        uow: UnitOfWork,
        caller: Participant,
        directory: Directory,
        idx: records.MobilityEventIndex,
        now_us: int,
    ) -> tuple[int, set[str], str, str]:
        roles = {mobility.Party.DESTINATION} if caller.id == idx.offer_origin else set()
        if idx.application_origin == caller.id:
            roles.add(mobility.Party.ORIGIN)
        mobility.check_step(idx.type, None, frozenset(roles))
        if uow.cycles.get(idx.application_origin, idx.application_id) is not None:
            raise RecordRejection(
                Reason.INVALID_TRANSITION,
                f"application {idx.application_id!r} is already open; give a new application id",
                "application_id",
            )
        profile_pk = _current_profile(uow, caller, idx.profile_record_id)
        offer = uow.records.current(idx.offer_origin, PayloadKind.JOB_OFFER.payload_type, idx.offer_record_id)
        if offer is None or offer[2] is not None:
            raise RecordRejection(
                Reason.UNKNOWN_REFERENCE,
                f"no open offer {idx.offer_record_id!r} of {idx.offer_origin!r}",
                "offer_record_id",
            )
        offer_row = uow.records.offer(offer[0])
        if offer_row.deadline is not None and offer_row.deadline < from_us(now_us).date():
            raise RecordRejection(
                Reason.INVALID_FIELD,
                f"offer {idx.offer_record_id!r} closed for applications on {offer_row.deadline.isoformat()}",
                "offer_record_id",
            )
        profile_row = uow.records.profile(profile_pk)
        consent_id = profile_row.consent_record_id
        destination = directory.participants.get(idx.offer_origin)
        audience = Audience(
            participant_id=idx.offer_origin,
            country_code=destination.country_code if destination else "",
            purpose_bit=records.purpose_bit(consent_pb2.PURPOSE_MATCHING)
            | records.purpose_bit(consent_pb2.PURPOSE_REFERRAL),
            active_status=consent_pb2.CONSENT_STATUS_ACTIVE,
            now_us=now_us,
        )
        if caller.id != idx.offer_origin and not uow.consents.allows(
            caller.id, consent_id, audience, named_only=False
        ):
            raise RecordRejection(
                Reason.NOT_ENTITLED,
                f"the candidate's consent does not allow sending the application to {idx.offer_origin!r} "
                "(it must be active, grant matching or referral, and name that participant or its country)",
                "profile_record_id",
            )
        cycle_id = uow.cycles.open(
            idx.type,
            now_us,
            origin_id=caller.id,
            application_id=idx.application_id,
            profile_record_id=idx.profile_record_id,
            offer_origin_id=idx.offer_origin,
            offer_record_id=idx.offer_record_id,
            origin_country=profile_row.residence_country,
            destination_country=offer_row.work_country,
            mobility_type=offer_row.mobility_type,
            isco08_code=offer_row.isco08_code,
            consent_record_id=consent_id,
        )
        return cycle_id, {caller.id, idx.offer_origin}, caller.id, consent_id

    def _count(self, caller: Participant, results: list[RecordResult]) -> None:
        for r in results:
            kind = r.kind.name.lower() if r.kind else "unknown"
            self.metrics.records.labels(caller.id, kind, r.outcome.value).inc()
            if r.reason is not None:
                self.metrics.rejections.labels(caller.id, r.reason.value.lower()).inc()


def _current_profile(uow: UnitOfWork, caller: Participant, profile_record_id: str) -> int:
    """The record pk of the caller's current profile. Raises RecordRejection UNKNOWN_REFERENCE."""
    profile = uow.records.current(caller.id, PayloadKind.CANDIDATE_PROFILE.payload_type, profile_record_id)
    if profile is None or profile[2] is not None:
        raise RecordRejection(
            Reason.UNKNOWN_REFERENCE,
            f"no current profile {profile_record_id!r} of this participant",
            "profile_record_id",
        )
    return int(profile[0])


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


_ACTIVE, _PAUSED, _WITHDRAWN = (
    consent_pb2.CONSENT_STATUS_ACTIVE,
    consent_pb2.CONSENT_STATUS_PAUSED,
    consent_pb2.CONSENT_STATUS_WITHDRAWN,
)
# status now -> {status before (None: first version) -> event}
_CONSENT_EVENT: dict[int, dict[int | None, str]] = {
    _ACTIVE: {
        None: "consent.granted",
        _ACTIVE: "consent.amended",
        _PAUSED: "consent.resumed",
        _WITHDRAWN: "consent.granted",
    },
    _PAUSED: {
        None: "consent.paused",
        _ACTIVE: "consent.paused",
        _PAUSED: "consent.amended",
        _WITHDRAWN: "consent.paused",
    },
    _WITHDRAWN: {
        None: "consent.withdrawn",
        _ACTIVE: "consent.withdrawn",
        _PAUSED: "consent.withdrawn",
        _WITHDRAWN: "consent.amended",
    },
}


def _publication_audit(
    actor: str, rec: records.ParsedRecord, consent_id: str | None, before: dict[str, int]
) -> list[AuditDraft]:
    """Audit entries for an accepted record: its publication, and for a consent the event it makes."""
    ptype = rec.kind.payload_type
    if isinstance(rec.index, records.ConsentIndex):
        event = _CONSENT_EVENT[rec.index.status][before.get(rec.record_id)]
        out = [AuditDraft(actor, event, actor, ptype, rec.record_id, rec.version, rec.record_id)]
        if rec.index.erasure_requested:
            out.append(
                AuditDraft(
                    actor, "erasure.requested", actor, ptype, rec.record_id, rec.version, rec.record_id
                )
            )
        return out
    return [AuditDraft(actor, "publish", actor, ptype, rec.record_id, rec.version, consent_id or "")]


class _Batch:
    """What one publication transaction has decided so far: versions seen, records accepted with
    their routes, audit drafts and mobility events."""

    def __init__(self, uow: UnitOfWork, caller: Participant, parsed: Sequence[records.ParsedRecord]) -> None:
        self.caller = caller
        self.stored, self.current = uow.records.versions_of(
            caller.id, ((rec.kind.payload_type, rec.record_id) for rec in parsed)
        )
        self.latest = {key: version for key, (_pk, version) in self.current.items()}
        consent_ids = [rec.record_id for rec in parsed if rec.kind is PayloadKind.CONSENT]
        self.consent_before = uow.consents.states(caller.id, consent_ids) if consent_ids else {}
        self.consent_terms = self._current_consents(uow, consent_ids)
        self.accepted: list[tuple[int, NewRecord]] = []
        self.routes: list[tuple[int, list[str]]] = []
        self.drafts: list[AuditDraft] = []
        self.events: list[tuple[str, int, records.MobilityEventIndex]] = []

    def version_verdict(self, i: int, rec: records.ParsedRecord, item: NewRecord) -> RecordResult | None:
        """DUPLICATE, VERSION_CONFLICT or STALE_VERSION for a version already stored (or older than
        the current one); None for a new version."""
        ptype = rec.kind.payload_type
        existing_sha = self.stored.get((ptype, rec.record_id, rec.version))
        if existing_sha is not None:
            if existing_sha == item.sha256:
                return RecordResult(i, rec.kind, rec.record_id, rec.version, Outcome.DUPLICATE)
            return _rejected(
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
        newest = self.latest.get((ptype, rec.record_id), 0)
        if rec.version < newest:
            return _rejected(
                i,
                rec.kind,
                RecordRejection(
                    Reason.STALE_VERSION,
                    f"record {rec.record_id!r} is already at version {newest}; version {rec.version} is older",
                    "header.version",
                ),
                rec,
            )
        return None

    def _current_consents(self, uow: UnitOfWork, consent_ids: list[str]) -> dict[str, records.ConsentIndex]:
        """The current version of each consent of the batch the hub already holds, as indexed."""
        ptype = PayloadKind.CONSENT.payload_type
        pks = {self.current[(ptype, rid)][0]: rid for rid in consent_ids if (ptype, rid) in self.current}
        if not pks:
            return {}
        out: dict[str, records.ConsentIndex] = {}
        for pk, envelope in uow.records.envelopes_of(list(pks)).items():
            try:
                idx = records.parse(PayloadKind.CONSENT, envelope.payload).index
            except RecordRejection:
                continue  # accepted under earlier rules and unreadable under today's: nothing to compare
            assert isinstance(idx, records.ConsentIndex)
            out[pks[pk]] = idx
        return out

    def consent_widening(self, record_id: str, new: records.ConsentIndex) -> RecordRejection | None:
        """Why a new version of a consent is refused for widening its current one without new
        evidence (hub.domain.consent_policy.widening), or None. The version it is compared with
        is the newest one, stored or accepted earlier in this batch."""
        before = self.consent_terms.get(record_id)
        found = consent_policy.widening(before, new) if before is not None else None
        if found is None:
            self.consent_terms[record_id] = new
            return None
        field, added = found
        return RecordRejection(
            Reason.INVALID_TRANSITION,
            f"{field}: this version {added} on the same evidence as the current one (notice "
            "versions, evidence.collected_at and evidence.reference unchanged); a consent is "
            "widened only by a new one: collect it under a new form or notice version",
            field,
        )

    def accept(self, i: int, item: NewRecord, recipients: list[str]) -> None:
        rec = item.parsed
        self.stored[(rec.kind.payload_type, rec.record_id, rec.version)] = item.sha256
        self.latest[(rec.kind.payload_type, rec.record_id)] = rec.version
        self.accepted.append((i, item))
        if recipients:
            self.routes.append((len(self.accepted) - 1, recipients))


def _erasure_done(origin_id: str, consent: records.ParsedRecord) -> AuditDraft:
    return AuditDraft(
        origin_id,
        "erasure.done",
        origin_id,
        consent.kind.payload_type,
        consent.record_id,
        consent.version,
        consent.record_id,
    )
