"""Single records: get one (if the caller may see it), withdraw one (if the caller is its origin)."""

from __future__ import annotations

from datetime import UTC, datetime

from spehub.v1 import consent_pb2

from hub.clock import Clock, to_us
from hub.domain import records
from hub.domain.directory import Participant
from hub.domain.records import PayloadKind
from hub.errors import InvalidRequestError, NotFoundError
from hub.services.delivery import DeliveryNotifier
from hub.store.store import Audience, ProfileFilter, Store, StoredEnvelope

DELIVERY_KIND_WITHDRAWAL = 2  # spehub.v1.DeliveryKind.DELIVERY_KIND_WITHDRAWAL


def _not_found(origin_id: str, kind: PayloadKind | None, record_id: str) -> NotFoundError:
    # One message for "absent" and "not yours to see": the answer must not tell them apart.
    name = kind.value if kind else "record"
    return NotFoundError(f"no {name} {record_id!r} of {origin_id!r} is available to you")


class RecordService:
    """Object-level access to single records."""

    def __init__(self, store: Store, clock: Clock, notifier: DeliveryNotifier) -> None:
        self.store = store
        self.clock = clock
        self.notifier = notifier

    def get(self, caller: Participant, origin_id: str, payload_type: int, record_id: str) -> StoredEnvelope:
        """The current envelope of a record the caller may see. Raises NotFoundError otherwise.

        The origin sees its own records. Others see offers, and profiles only
        under a consent that allows them pool search; consents and personal
        details stay with their origin.
        """
        kind = PayloadKind.from_payload_type(payload_type)
        if kind is None or not records.RECORD_ID.match(record_id):
            raise _not_found(origin_id, kind, record_id)
        with self.store.unit_of_work() as uow:
            found = uow.current_record(origin_id, payload_type, record_id)
            if found is None or found[2] is not None:
                raise _not_found(origin_id, kind, record_id)
            pk, envelope, _ = found
            if caller.id == origin_id or kind is PayloadKind.JOB_OFFER:
                return envelope
            if kind is PayloadKind.CANDIDATE_PROFILE:
                audience = Audience(
                    participant_id=caller.id,
                    country_code=caller.country_code,
                    purpose_bit=records.purpose_bit(consent_pb2.PURPOSE_POOL_SEARCH),
                    active_status=consent_pb2.CONSENT_STATUS_ACTIVE,
                    now_us=to_us(self.clock()),
                )
                if uow.search_profiles(ProfileFilter(record_pk=pk), audience, pk - 1, 1):
                    return envelope
        raise _not_found(origin_id, kind, record_id)

    def withdraw(self, caller: Participant, payload_type: int, record_id: str) -> datetime:
        """Withdraw one of the caller's records; idempotent. Returns when it was withdrawn.

        Every participant that received the record gets a withdrawal notice.
        Raises NotFoundError if the caller has no such record.
        """
        kind = PayloadKind.from_payload_type(payload_type)
        if kind is None:
            raise InvalidRequestError("payload_type must be a known PayloadType", "payload_type")
        now = self.clock()
        with self.store.unit_of_work(write=True) as uow:
            found = (
                uow.current_record(caller.id, payload_type, record_id)
                if records.RECORD_ID.match(record_id)
                else None
            )
            if found is None:
                raise _not_found(caller.id, kind, record_id)
            pk, envelope, withdrawn_at = found
            if withdrawn_at is not None:
                return datetime.fromtimestamp(withdrawn_at / 1_000_000, UTC)
            uow.withdraw(pk, to_us(now))
            recipients = uow.recipients_of(caller.id, payload_type, record_id)
            uow.add_deliveries([(r, DELIVERY_KIND_WITHDRAWAL, envelope.id) for r in recipients], to_us(now))
            uow.commit()
        if recipients:
            self.notifier.notify()
        return now
