"""What operators see in Prometheus: per-participant traffic, backlogs, pool size, checkpoint age, expiry."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from spehub.v1 import delivery_pb2, exchange_pb2

from hub.domain.records import PayloadKind
from tests.support.records import demo_consent, demo_offer, demo_personal, demo_profile

SN, FT = "sn-anpej", "fr-francetravail"


def _scrape(hub) -> dict[str, list]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(body):
        out.setdefault(family.name, []).extend(family.samples)
    return out, body


def test_operational_gauges_and_traffic_by_participant(hub, connect, clock):
    sn, ft = connect(SN), connect(FT)
    now = clock()
    results = sn.publish_one_batch(
        [
            sn.seal(demo_consent(SN, "c-1", 1, now, recipient_countries=("FR",)), PayloadKind.CONSENT),
            sn.seal(demo_profile(SN, "p-1", "c-1", 1, now), PayloadKind.CANDIDATE_PROFILE),
            sn.seal(demo_personal(SN, "d-1", "p-1", "c-1", 1, now), PayloadKind.PERSONAL_DETAILS),
        ]
    )
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in results)
    offers = [
        ft.seal(demo_offer(FT, f"o-{i}", 1, now, targets=("SN",)), PayloadKind.JOB_OFFER) for i in range(3)
    ]
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in ft.publish_one_batch(offers))

    metrics, body = _scrape(hub)
    gauge = {s.name + str(sorted(s.labels.items())): s.value for samples in metrics.values() for s in samples}
    assert gauge["spehub_delivery_backlog[('recipient', 'sn-anpej')]"] == 3
    # One profile, whose consent does not grant statistics: not in the pool-size metric
    # (tests/test_statistics.py shows what is).
    assert not any(k.startswith("spehub_pool_profiles[") for k in gauge)
    assert {s.labels["certificate"] for s in metrics["spehub_certificate_expiry_timestamp_seconds"]} == {
        "hub-server",
        "client-ca",
    }
    assert all(s.value > now.timestamp() for s in metrics["spehub_certificate_expiry_timestamp_seconds"])
    published = [
        s
        for s in metrics["spehub_rpc_handled"]
        if s.labels["participant"] == FT and s.labels["grpc_method"] == "Publish"
    ]
    assert published and published[0].labels["grpc_code"] == "OK"

    # Checkpointed: the age is that of the checkpoint (delivered to every participant too).
    # Acknowledged: the backlog empties.
    hub.audit.checkpoint()
    delivered = [
        r.delivery
        for r in sn.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=10)
    ]
    assert delivered[-1].kind == delivery_pb2.DELIVERY_KIND_AUDIT_CHECKPOINT
    sn.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=delivered[-1].sequence), timeout=10)
    clock.advance(seconds=90)
    metrics, body = _scrape(hub)
    gauge = {s.name + str(sorted(s.labels.items())): s.value for samples in metrics.values() for s in samples}
    assert gauge["spehub_delivery_backlog[('recipient', 'sn-anpej')]"] == 0
    assert gauge["spehub_audit_checkpoint_age_seconds[]"] == 90
    # Labels hold ids and codes only: none of the candidate's personal data.
    for secret in ("Awa", "Diop", "+221770000000", "1998-04-12"):
        assert secret not in body
