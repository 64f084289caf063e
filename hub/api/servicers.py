"""gRPC servicers: unwrap requests, call a service, wrap results. No rules live here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from spehub.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    delivery_pb2,
    delivery_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    mobility_pb2,
    mobility_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
)

from hub.api import convert
from hub.api.identity import current_call, current_caller
from hub.clock import Clock, timestamp
from hub.domain import audit, signing
from hub.domain.delivery import DeliveryKind
from hub.domain.directory import Directory, Participant, SigningKey
from hub.domain.envelopes import envelope_from_proto
from hub.domain.stored import StoredEnvelope
from hub.domain.tokens import HubKeyRing, TokenService
from hub.errors import InvalidRequestError, NotFoundError
from hub.services.audit import AuditService
from hub.services.delivery import DeliveryService
from hub.services.directory import DirectoryAdmin, DirectoryProvider, export_directory
from hub.services.exchange import ExchangeService, PreparedBatch
from hub.services.matching import MatchService
from hub.services.mobility import MobilityReader
from hub.services.pool import PoolService
from hub.services.records import RecordService


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, exchange: ExchangeService, records: RecordService) -> None:
        self.exchange = exchange
        self.records = records

    def GetRecord(
        self, request: exchange_pb2.GetRecordRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.GetRecordResponse:
        envelope = self.records.get(
            current_caller(), request.origin_participant_id, request.payload_type, request.record_id
        )
        return exchange_pb2.GetRecordResponse(envelope=convert.envelope_to_proto(envelope))

    def WithdrawRecord(
        self, request: exchange_pb2.WithdrawRecordRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.WithdrawRecordResponse:
        at = self.records.withdraw(current_caller(), request.payload_type, request.record_id)
        return exchange_pb2.WithdrawRecordResponse(withdrawn_at=timestamp(at))

    async def Publish(
        self,
        request_iterator: AsyncIterator[exchange_pb2.PublishRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[exchange_pb2.PublishResponse]:
        # While a batch is stored (on a worker thread, SQLite's writer lock taken), the next one is
        # verified on the verify threads (which release the GIL) and parsed: one stream keeps both
        # the database and the cores busy. Responses keep the order of the requests. Between
        # messages the stream waits on the event loop and holds no thread.
        caller = current_caller()
        pending: tuple[str, asyncio.Future[PreparedBatch]] | None = None
        try:
            async for request in request_iterator:
                envelopes = [envelope_from_proto(e) for e in request.envelopes]
                # to_thread runs in a copy of this call's context: log lines keep the request id and caller.
                following = (
                    request.request_id,
                    asyncio.ensure_future(asyncio.to_thread(self.exchange.prepare, caller, envelopes)),
                )
                if pending is not None:
                    yield await self._stored(*pending)
                pending = following
            if pending is not None:
                yield await self._stored(*pending)
                pending = None
        finally:
            if pending is not None:
                pending[1].cancel()

    async def _stored(
        self, request_id: str, prepared: asyncio.Future[PreparedBatch]
    ) -> exchange_pb2.PublishResponse:
        results = await asyncio.to_thread(self.exchange.store_prepared, await prepared)
        return exchange_pb2.PublishResponse(
            request_id=request_id, results=[convert.result_to_proto(r) for r in results]
        )


def _record_ref(envelope: StoredEnvelope) -> delivery_pb2.RecordRef:
    return delivery_pb2.RecordRef(
        origin_participant_id=envelope.origin_id,
        payload_type=envelope.payload_type,  # type: ignore[arg-type]
        record_id=envelope.record_id,
        version=envelope.version,
    )


def _checkpoint(envelope: StoredEnvelope) -> delivery_pb2.AuditCheckpoint:
    seq, entry_hash = audit.parse_checkpoint_payload(envelope.payload)
    return delivery_pb2.AuditCheckpoint(
        sequence=seq,
        entry_hash=entry_hash,
        signed_at=Timestamp(seconds=envelope.signed_at_seconds, nanos=envelope.signed_at_nanos),
        key_id=envelope.key_id,
        signature=envelope.signature,
    )


class PoolServicer(pool_pb2_grpc.PoolServiceServicer):
    def __init__(self, pool: PoolService, clock: Clock, matcher: MatchService) -> None:
        self.pool = pool
        self.clock = clock
        self.matcher = matcher

    def MatchCandidates(
        self, request: pool_pb2.MatchCandidatesRequest, context: grpc.ServicerContext
    ) -> pool_pb2.MatchCandidatesResponse:
        results, token = self.matcher.candidates(
            current_caller(),
            request.offer_origin_participant_id,
            request.offer_record_id,
            request.page_size,
            request.page_token,
        )
        return pool_pb2.MatchCandidatesResponse(
            candidates=[
                pool_pb2.CandidateMatch(
                    profile=convert.envelope_to_proto(r.envelope),
                    origin_country_code=r.origin_country,
                    pseudonym=r.pseudonym,
                    match=convert.match_to_proto(r.match),
                )
                for r in results
            ],
            next_page_token=token,
        )

    def MatchOffers(
        self, request: pool_pb2.MatchOffersRequest, context: grpc.ServicerContext
    ) -> pool_pb2.MatchOffersResponse:
        results, token = self.matcher.offers(
            current_caller(), request.profile_record_id, request.page_size, request.page_token
        )
        return pool_pb2.MatchOffersResponse(
            offers=[
                pool_pb2.OfferMatch(
                    offer=convert.envelope_to_proto(r.envelope), match=convert.match_to_proto(r.match)
                )
                for r in results
            ],
            next_page_token=token,
        )

    def SearchProfiles(
        self, request: pool_pb2.SearchProfilesRequest, context: grpc.ServicerContext
    ) -> pool_pb2.SearchProfilesResponse:
        hits, token = self.pool.search_profiles(
            current_caller(), convert.profile_filter(request), request.page_size, request.page_token
        )
        return pool_pb2.SearchProfilesResponse(
            profiles=[
                pool_pb2.ProfileHit(
                    profile=convert.envelope_to_proto(h.envelope),
                    origin_country_code=h.origin_country,
                    pseudonym=h.pseudonym,
                )
                for h in hits
            ],
            next_page_token=token,
        )

    def SearchOffers(
        self, request: pool_pb2.SearchOffersRequest, context: grpc.ServicerContext
    ) -> pool_pb2.SearchOffersResponse:
        envelopes, token = self.pool.search_offers(
            current_caller(),
            convert.offer_filter(request, self.clock().date()),
            request.page_size,
            request.page_token,
        )
        return pool_pb2.SearchOffersResponse(
            offers=[pool_pb2.OfferHit(offer=convert.envelope_to_proto(e)) for e in envelopes],
            next_page_token=token,
        )


class DeliveryServicer(delivery_pb2_grpc.DeliveryServiceServicer):
    def __init__(self, delivery: DeliveryService) -> None:
        self.delivery = delivery

    async def Subscribe(
        self, request: delivery_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[delivery_pb2.SubscribeResponse]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        # The client learns at once that the subscription is established, even with nothing pending:
        # the interceptor sends the initial metadata (the request id) before any servicer runs.
        # Waiting for deliveries holds no thread (DeliveryService.stream).
        async for row in self.delivery.stream(current_caller(), after, request.stop_when_drained):
            delivery = delivery_pb2.Delivery(
                sequence=row.seq,
                kind=row.kind,  # type: ignore[arg-type]
                routed_at=convert.timestamp_from_us(row.routed_at_us),
            )
            if row.kind == DeliveryKind.AUDIT_CHECKPOINT:
                delivery.checkpoint.CopyFrom(_checkpoint(row.envelope))
            elif row.kind == DeliveryKind.DELETION:
                delivery.erased.CopyFrom(_record_ref(row.envelope))
            elif row.kind == DeliveryKind.WITHDRAWAL:
                delivery.withdrawn.CopyFrom(_record_ref(row.envelope))
            else:
                delivery.envelope.CopyFrom(convert.envelope_to_proto(row.envelope))
            yield delivery_pb2.SubscribeResponse(delivery=delivery)

    def Acknowledge(
        self, request: delivery_pb2.AcknowledgeRequest, context: grpc.ServicerContext
    ) -> delivery_pb2.AcknowledgeResponse:
        return delivery_pb2.AcknowledgeResponse(
            cursor=self.delivery.acknowledge(current_caller(), request.sequence)
        )


def _participant_to_proto(p: Participant, directory: Directory) -> directory_pb2.Participant:
    return directory_pb2.Participant(
        id=p.id,
        country_code=p.country_code,
        kind=directory_pb2.ParticipantKind.Value(f"PARTICIPANT_KIND_{p.kind.name}"),
        display_name=p.display_name,
        status=directory_pb2.PARTICIPANT_STATUS_ACTIVE
        if p.active
        else directory_pb2.PARTICIPANT_STATUS_SUSPENDED,
        signing_keys=[_key_to_proto(k) for k in directory.keys_of(p.id)],
    )


def _ts(value: datetime | None) -> Timestamp | None:
    return timestamp(value) if value is not None else None


def _key_to_proto(k: SigningKey) -> directory_pb2.SigningKeyInfo:
    return directory_pb2.SigningKeyInfo(
        key_id=k.key_id,
        algorithm=signing.ALGORITHM,
        public_key_pem=k.public_key_pem,
        not_before=_ts(k.not_before),
        not_after=_ts(k.not_after),
        revoked_at=_ts(k.revoked_at),
    )


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(
        self,
        provider: DirectoryProvider,
        admin: DirectoryAdmin,
        tokens: TokenService,
        keys: HubKeyRing,
        clock: Clock,
    ) -> None:
        self.provider = provider
        self.admin = admin
        self.tokens = tokens
        self.keys = keys
        self.clock = clock

    def IssueToken(
        self, request: directory_pb2.IssueTokenRequest, context: grpc.ServicerContext
    ) -> directory_pb2.IssueTokenResponse:
        call = current_call()
        token, expires, scopes = self.tokens.issue(
            call.participant, list(request.scopes), call.certificate.thumbprint, self.clock()
        )
        return directory_pb2.IssueTokenResponse(
            access_token=token,
            token_type="Bearer",  # noqa: S106 (the OAuth token type, not a secret)
            expires_at=_ts(expires),
            scopes=sorted(scopes),
        )

    def GetParticipant(
        self, request: directory_pb2.GetParticipantRequest, context: grpc.ServicerContext
    ) -> directory_pb2.GetParticipantResponse:
        directory = self.provider.current()
        participant = directory.participants.get(request.participant_id)
        if participant is None:
            raise NotFoundError(f"no participant {request.participant_id!r}")
        return directory_pb2.GetParticipantResponse(participant=_participant_to_proto(participant, directory))

    def ListParticipants(
        self, request: directory_pb2.ListParticipantsRequest, context: grpc.ServicerContext
    ) -> directory_pb2.ListParticipantsResponse:
        directory = self.provider.current()
        return directory_pb2.ListParticipantsResponse(
            participants=[
                _participant_to_proto(directory.participants[pid], directory)
                for pid in sorted(directory.participants)
            ]
        )

    def ExportDirectory(
        self, request: directory_pb2.ExportDirectoryRequest, context: grpc.ServicerContext
    ) -> directory_pb2.ExportDirectoryResponse:
        body, key_id, seconds, nanos, signature = export_directory(
            self.provider.current(), self.keys, self.clock()
        )
        return directory_pb2.ExportDirectoryResponse(
            registry_json=body,
            key_id=key_id,
            signed_at=Timestamp(seconds=seconds, nanos=nanos),
            signature=signature,
        )

    def SetParticipantStatus(
        self, request: directory_pb2.SetParticipantStatusRequest, context: grpc.ServicerContext
    ) -> directory_pb2.SetParticipantStatusResponse:
        if request.status not in (
            directory_pb2.PARTICIPANT_STATUS_ACTIVE,
            directory_pb2.PARTICIPANT_STATUS_SUSPENDED,
        ):
            raise InvalidRequestError("status must be ACTIVE or SUSPENDED", "status")
        participant = self.admin.set_status(
            request.participant_id,
            request.status == directory_pb2.PARTICIPANT_STATUS_ACTIVE,
            current_caller().id,
        )
        return directory_pb2.SetParticipantStatusResponse(
            participant=_participant_to_proto(participant, self.provider.current())
        )

    def RevokeSigningKey(
        self, request: directory_pb2.RevokeSigningKeyRequest, context: grpc.ServicerContext
    ) -> directory_pb2.RevokeSigningKeyResponse:
        return directory_pb2.RevokeSigningKeyResponse(
            signing_key=_key_to_proto(
                self.admin.revoke_key(request.participant_id, request.key_id, current_caller().id)
            )
        )

    def RevokeCertificate(
        self, request: directory_pb2.RevokeCertificateRequest, context: grpc.ServicerContext
    ) -> directory_pb2.RevokeCertificateResponse:
        return directory_pb2.RevokeCertificateResponse(
            revoked_at=_ts(self.admin.revoke_certificate(request.certificate_sha256, current_caller().id))
        )


class MobilityServicer(mobility_pb2_grpc.MobilityServiceServicer):
    def __init__(self, reader: MobilityReader) -> None:
        self.reader = reader

    def GetCycle(
        self, request: mobility_pb2.GetCycleRequest, context: grpc.ServicerContext
    ) -> mobility_pb2.GetCycleResponse:
        cycle = self.reader.get(
            current_caller(), request.application_origin_participant_id, request.application_id
        )
        return mobility_pb2.GetCycleResponse(cycle=convert.cycle_to_proto(cycle.row, cycle.events))

    def ListCycles(
        self, request: mobility_pb2.ListCyclesRequest, context: grpc.ServicerContext
    ) -> mobility_pb2.ListCyclesResponse:
        cycles, token = self.reader.list(
            current_caller(), request.profile_record_id, request.state, request.page_size, request.page_token
        )
        return mobility_pb2.ListCyclesResponse(
            cycles=[convert.cycle_to_proto(c.row, c.events) for c in cycles], next_page_token=token
        )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditService) -> None:
        self.audit = audit

    def SubjectAccessReport(
        self, request: audit_pb2.SubjectAccessReportRequest, context: grpc.ServicerContext
    ) -> audit_pb2.SubjectAccessReportResponse:
        entries = self.audit.subject_report(current_caller(), request.consent_record_id)
        return audit_pb2.SubjectAccessReportResponse(
            entries=[
                audit_pb2.AuditEntry(
                    sequence=e.seq,
                    at=convert.timestamp_from_us(e.at_us),
                    actor=e.draft.actor,
                    action=e.draft.action,
                    origin_participant_id=e.draft.origin_id,
                    payload_type=e.draft.payload_type,  # type: ignore[arg-type]
                    record_id=e.draft.record_id,
                    version=e.draft.version,
                    purpose=e.draft.purpose,
                )
                for e in entries
            ]
        )
