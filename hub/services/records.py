"""Single records: get one (if the caller may see it), withdraw one (if the caller is its origin)."""

from __future__ import annotations

from datetime import UTC, datetime

from spehub.v1 import consent_pb2

from hub.clock import Clock, to_us
from hub.domain import records, sealing
from hub.domain.audit import AuditDraft, Disclosure
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Participant
from hub.domain.records import PayloadKind, RecordRejection
from hub.domain.stored import Audience, ProfileFilter, StoredEnvelope
from hub.errors import InvalidRequestError, NotFoundError
from hub.services.delivery import DeliveryNotifier
from hub.services.privacy import Sealer
from hub.store.engine import Store
from hub.store.uow import UnitOfWork


def _not_found(origin_id: str, kind: PayloadKind | None, record_id: str) -> NotFoundError:
    # One message for "absent" and "not yours to see": the answer must not tell them apart.
    name = kind.value if kind else "record"
    return NotFoundError(f"no {name} {record_id!r} of {origin_id!r} is available to you")


def _profile_published(uow: UnitOfWork, origin_id: str, personal_payload: bytes) -> bool:
    """Whether the profile a personal view belongs to is published now (its current version not
    withdrawn): a withdrawn profile's personal view is withdrawn with it, whatever its consent."""
    try:
        index = records.parse(PayloadKind.PERSONAL_DETAILS, personal_payload).index
    except RecordRejection:
        return False  # accepted under earlier rules, unreadable under today's: not disclosed
    assert isinstance(index, records.PersonalIndex)
    found = uow.records.current(
        origin_id, PayloadKind.CANDIDATE_PROFILE.payload_type, index.profile_record_id
    )
    return found is not None and found[2] is None


class RecordService:
    """Object-level access to single records."""

    def __init__(self, store: Store, clock: Clock, notifier: DeliveryNotifier, sealer: Sealer) -> None:
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.sealer = sealer

    def get(self, caller: Participant, origin_id: str, payload_type: int, record_id: str) -> StoredEnvelope:
        """The current envelope of a record the caller may see. Raises NotFoundError otherwise.

        The origin sees its own records. Others see offers; profiles only under
        a consent that allows them pool search; personal details only under a
        contact-release consent naming them as a participant (not just their
        country), and only while the profile they belong to is published (not
        withdrawn); that release is recorded. Consents stay with their origin.
        """
        kind = PayloadKind.from_payload_type(payload_type)
        if kind is None or not records.RECORD_ID.fullmatch(record_id):
            raise _not_found(origin_id, kind, record_id)
        now_us = to_us(self.clock())
        with self.store.unit_of_work(write=True) as uow:
            found = uow.records.current(origin_id, payload_type, record_id)
            if found is None or found[2] is not None:
                raise _not_found(origin_id, kind, record_id)
            pk, envelope, _ = found
            (opened,) = self.sealer.open([envelope])
            if opened is None:  # erased: the data key is gone
                raise _not_found(origin_id, kind, record_id)
            if caller.id == origin_id or kind is PayloadKind.JOB_OFFER:
                return opened
            consent_id = (
                sealing.sealed_consent_id(envelope.payload) if sealing.is_sealed(envelope.payload) else ""
            )
            visible, action, purpose = False, "", ""
            if kind is PayloadKind.CANDIDATE_PROFILE:
                audience = self._audience(caller, consent_pb2.PURPOSE_POOL_SEARCH, now_us)
                visible = bool(uow.pool.profiles(ProfileFilter(record_pk=pk), audience, pk - 1, 1))
                action, purpose = Disclosure.GET, "pool_search"
            elif kind is PayloadKind.PERSONAL_DETAILS and consent_id:
                audience = self._audience(caller, consent_pb2.PURPOSE_CONTACT_RELEASE, now_us)
                visible = uow.consents.allows(
                    origin_id, consent_id, audience, named_only=True
                ) and _profile_published(uow, origin_id, opened.payload)
                action, purpose = Disclosure.PERSONAL, "contact_release"
            if visible:
                uow.audit.append(
                    [
                        AuditDraft(
                            caller.id,
                            action,
                            origin_id,
                            payload_type,
                            record_id,
                            envelope.version,
                            consent_id,
                            purpose,
                        )
                    ],
                    now_us,
                )
                uow.commit()
                return opened
        raise _not_found(origin_id, kind, record_id)

    @staticmethod
    def _audience(caller: Participant, purpose: int, now_us: int) -> Audience:
        return Audience(
            participant_id=caller.id,
            country_code=caller.country_code,
            purpose_bit=records.purpose_bit(purpose),
            active_status=consent_pb2.CONSENT_STATUS_ACTIVE,
            now_us=now_us,
        )

    def withdraw(self, caller: Participant, payload_type: int, record_id: str) -> datetime:
        """Withdraw one of the caller's records; idempotent. Returns when it was withdrawn.

        Every participant that received the record gets a withdrawal notice. A profile takes
        with it the personal views of it that were released: each is withdrawn too, and every
        participant it was released to gets a withdrawal notice for it.
        Raises NotFoundError if the caller has no such record.
        """
        kind = PayloadKind.from_payload_type(payload_type)
        if kind is None:
            raise InvalidRequestError("payload_type must be a known PayloadType", "payload_type")
        now = self.clock()
        with self.store.unit_of_work(write=True) as uow:
            found = (
                uow.records.current(caller.id, payload_type, record_id)
                if records.RECORD_ID.fullmatch(record_id)
                else None
            )
            if found is None:
                raise _not_found(caller.id, kind, record_id)
            pk, envelope, withdrawn_at = found
            if withdrawn_at is not None:
                return datetime.fromtimestamp(withdrawn_at / 1_000_000, UTC)
            withdrawn: list[tuple[int, StoredEnvelope, list[str]]] = [(pk, envelope, [])]
            if kind is PayloadKind.CANDIDATE_PROFILE:
                withdrawn += self._released_personal_views(uow, caller.id, record_id, envelope)
            notices: list[tuple[str, DeliveryKind, int]] = []
            drafts: list[AuditDraft] = []
            for record_pk, env, released in withdrawn:
                uow.records.withdraw(record_pk, to_us(now))
                drafts.append(
                    AuditDraft(caller.id, "withdraw", caller.id, env.payload_type, env.record_id, env.version)
                )
                recipients = set(uow.records.recipients_of(caller.id, env.payload_type, env.record_id))
                notices += [(r, DeliveryKind.WITHDRAWAL, env.id) for r in sorted(recipients.union(released))]
            uow.audit.append(drafts, to_us(now))
            uow.deliveries.add(notices, to_us(now))
            uow.commit()
        if notices:
            self.notifier.notify()
        return now

    def _released_personal_views(
        self, uow: UnitOfWork, origin_id: str, profile_record_id: str, profile: StoredEnvelope
    ) -> list[tuple[int, StoredEnvelope, list[str]]]:
        """The personal views of a profile being withdrawn that were released to participants and
        are not withdrawn yet, each with who received it: withdrawn with the profile, each of them
        gets a withdrawal notice. (One never released is withheld by ``get`` all the same.)"""
        if not sealing.is_sealed(profile.payload):
            return []
        consent_id = sealing.sealed_consent_id(profile.payload)
        out: list[tuple[int, StoredEnvelope, list[str]]] = []
        for record_id, actors in sorted(uow.audit.personal_releases(origin_id, consent_id).items()):
            found = uow.records.current(origin_id, PayloadKind.PERSONAL_DETAILS.payload_type, record_id)
            if found is None or found[2] is not None:
                continue
            pk, envelope, _ = found
            (opened,) = self.sealer.open([envelope])
            if opened is None:
                continue  # erased
            try:
                index = records.parse(PayloadKind.PERSONAL_DETAILS, opened.payload).index
            except RecordRejection:
                index = None
            if isinstance(index, records.PersonalIndex) and index.profile_record_id == profile_record_id:
                out.append((pk, envelope, actors))
        return out
