"""gRPC servicers: unwrap requests, call a service, wrap results. No rules live here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from spehub.v1 import (
    delivery_pb2,
    delivery_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
)

from hub.api import convert
from hub.api.identity import current_caller
from hub.clock import Clock
from hub.services.delivery import DeliveryService
from hub.services.exchange import ExchangeService
from hub.services.pool import PoolService


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, exchange: ExchangeService) -> None:
        self.exchange = exchange

    def Publish(
        self, request_iterator: Iterator[exchange_pb2.PublishRequest], context: grpc.ServicerContext
    ) -> Iterator[exchange_pb2.PublishResponse]:
        for request in request_iterator:
            caller = current_caller()
            results = self.exchange.publish(
                caller, [convert.envelope_from_proto(e) for e in request.envelopes]
            )
            yield exchange_pb2.PublishResponse(
                request_id=request.request_id, results=[convert.result_to_proto(r) for r in results]
            )


class PoolServicer(pool_pb2_grpc.PoolServiceServicer):
    def __init__(self, pool: PoolService, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    def SearchProfiles(
        self, request: pool_pb2.SearchProfilesRequest, context: grpc.ServicerContext
    ) -> pool_pb2.SearchProfilesResponse:
        hits, token = self.pool.search_profiles(
            current_caller(), convert.profile_filter(request), request.page_size, request.page_token
        )
        return pool_pb2.SearchProfilesResponse(
            profiles=[
                pool_pb2.ProfileHit(
                    profile=convert.envelope_to_proto(h.envelope), origin_country_code=h.origin_country
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

    def Subscribe(
        self, request: delivery_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[delivery_pb2.SubscribeResponse]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        for row in self.delivery.stream(
            current_caller(), after, request.stop_when_drained, context.is_active
        ):
            yield delivery_pb2.SubscribeResponse(
                delivery=delivery_pb2.Delivery(
                    sequence=row.seq,
                    kind=row.kind,  # type: ignore[arg-type]
                    envelope=convert.envelope_to_proto(row.envelope),
                    routed_at=convert.timestamp_from_us(row.routed_at_us),
                )
            )

    def Acknowledge(
        self, request: delivery_pb2.AcknowledgeRequest, context: grpc.ServicerContext
    ) -> delivery_pb2.AcknowledgeResponse:
        return delivery_pb2.AcknowledgeResponse(
            cursor=self.delivery.acknowledge(current_caller(), request.sequence)
        )
