"""Delivery: offers routed to the origin SPEs they address, durable cursors, at-least-once."""

from __future__ import annotations

import threading

import grpc
import pytest
from spehub.v1 import delivery_pb2, offer_pb2

from hub.domain.records import PayloadKind
from tests.support.records import demo_offer

SN, ML, MA, FT = "sn-anpej", "ml-anpe", "ma-anapec", "fr-francetravail"


def _drain(p, **kw) -> list[delivery_pb2.Delivery]:
    request = delivery_pb2.SubscribeRequest(stop_when_drained=True, **kw)
    return [r.delivery for r in p.delivery.Subscribe(request, timeout=10)]


def _offer_ids(deliveries) -> list[str]:
    """The offers delivered (a hub's shutdown also delivers its last audit checkpoint)."""
    return [
        offer_pb2.JobOffer.FromString(d.envelope.payload).header.record_id
        for d in deliveries
        if d.kind == delivery_pb2.DELIVERY_KIND_RECORD
    ]


def _publish_offer(ft, record_id, targets=("SN", "ML"), version=1):
    offer = ft.seal(demo_offer(FT, record_id, version, ft.clock(), targets=targets), PayloadKind.JOB_OFFER)
    ft.publish_one_batch([offer])
    return offer


def test_offer_reaches_exactly_the_targeted_origin_spes(hub, connect):
    ft = connect(FT)
    _publish_offer(ft, "o-1", targets=("SN", "ML"))
    _publish_offer(ft, "o-2", targets=("MA",))
    assert _offer_ids(_drain(connect(SN))) == ["o-1"]
    assert _offer_ids(_drain(connect(ML))) == ["o-1"]
    assert _offer_ids(_drain(connect(MA))) == ["o-2"]
    assert _drain(ft) == []


def test_unacknowledged_deliveries_come_again_and_ack_moves_the_cursor(hub, connect):
    ft, sn = connect(FT), connect(SN)
    for i in range(3):
        _publish_offer(ft, f"o-{i}")
    first = _drain(sn)
    assert _offer_ids(first) == ["o-0", "o-1", "o-2"]
    assert [d.sequence for d in first] == sorted(d.sequence for d in first)
    assert _offer_ids(_drain(sn)) == ["o-0", "o-1", "o-2"]  # nothing acknowledged yet

    cursor = sn.delivery.Acknowledge(
        delivery_pb2.AcknowledgeRequest(sequence=first[1].sequence), timeout=5
    ).cursor
    assert cursor == first[1].sequence
    assert _offer_ids(_drain(sn)) == ["o-2"]
    # Cumulative and never backwards.
    assert (
        sn.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=first[0].sequence), timeout=5).cursor
        == cursor
    )
    # An explicit start re-reads history.
    assert _offer_ids(_drain(sn, after_sequence=0)) == ["o-0", "o-1", "o-2"]


def test_cursor_survives_a_hub_restart(test_pki, database_url, clock):
    from prometheus_client import CollectorRegistry

    from hub.bootstrap import build_hub
    from tests.support.hubs import hub_settings, make_participant

    def start():
        return build_hub(
            hub_settings(test_pki, database_url), clock=clock, metrics_registry=CollectorRegistry()
        )

    def client(h, pid):
        return make_participant(h.port, test_pki, pid, clock)

    h = start()
    try:
        ft, sn = client(h, FT), client(h, SN)
        _publish_offer(ft, "o-0")
        _publish_offer(ft, "o-1")
        got = _drain(sn)
        sn.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=got[0].sequence), timeout=5)
    finally:
        h.stop(0)
    h = start()
    try:
        assert _offer_ids(_drain(client(h, SN))) == ["o-1"]
    finally:
        h.stop(0)


def test_acknowledging_beyond_the_last_delivery_is_refused(hub, connect):
    ft, sn = connect(FT), connect(SN)
    _publish_offer(ft, "o-0")
    (only,) = _drain(sn)
    with pytest.raises(grpc.RpcError) as err:
        sn.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=only.sequence + 1000), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _offer_ids(_drain(sn)) == ["o-0"]


def test_live_subscription_receives_new_offers_as_they_are_published(hub, connect):
    ft, sn = connect(FT), connect(SN)
    received: list[str] = []
    stream = sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(), timeout=20)
    done = threading.Event()

    def read():
        for item in stream:
            received.append(offer_pb2.JobOffer.FromString(item.delivery.envelope.payload).header.record_id)
            if len(received) == 2:
                done.set()
                return

    reader = threading.Thread(target=read)
    reader.start()
    _publish_offer(ft, "o-live-1")
    _publish_offer(ft, "o-live-2")
    assert done.wait(15)
    stream.cancel()
    reader.join(5)
    assert received == ["o-live-1", "o-live-2"]


def test_duplicate_publication_is_not_delivered_twice(hub, connect):
    ft, sn = connect(FT), connect(SN)
    offer = _publish_offer(ft, "o-0")
    ft.publish_one_batch([offer])
    assert _offer_ids(_drain(sn)) == ["o-0"]
    _publish_offer(ft, "o-0", version=2)
    assert _offer_ids(_drain(sn)) == ["o-0", "o-0"]
