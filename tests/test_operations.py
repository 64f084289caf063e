"""What operators see in Prometheus: per-participant traffic, backlogs, pool size, checkpoint age, expiry."""

from __future__ import annotations

import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from spehub.v1 import delivery_pb2, exchange_pb2
from sqlalchemy import event

from hub.domain.records import PayloadKind
from tests.support.hubs import make_participant, started_hub
from tests.support.records import demo_consent, demo_offer, demo_personal, demo_profile

SN, FT = "sn-anpej", "fr-francetravail"


def _scrape(hub) -> dict[str, list]:
    """The metrics after the hub's background computation of its gauges ran once more."""
    hub.gauges.refresh()
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


def _body(hub) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=5).read().decode()


def _backlog(body: str, recipient: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "spehub_delivery_backlog" and sample.labels["recipient"] == recipient:
                return sample.value
    return None


def _offers(hub, test_pki, clock, n: int) -> None:
    ft = make_participant(hub.port, test_pki, FT, clock)
    try:
        now = clock()
        offers = [
            ft.seal(demo_offer(FT, f"o-{i}", 1, now, targets=("SN",)), PayloadKind.JOB_OFFER)
            for i in range(n)
        ]
        assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in ft.publish_one_batch(offers))
    finally:
        ft.channel.close()


def test_a_scrape_runs_no_query_and_serves_what_the_background_computed(test_pki, database_url, clock):
    """A scrape counted the pool (0.5 s at a million candidates) and every minute recounted the
    corridor statistics (22 s) inside the request: it now reads what the hub computed in the
    background, and shows new values once that computation ran again."""
    with started_hub(
        test_pki,
        database_url,
        clock,
        metrics_refresh_seconds=3600,
        statistics_cache_seconds=3600,
        analyze_seconds=0,
    ) as hub:
        hub.gauges.refresh()  # the computation at start, done
        _offers(hub, test_pki, clock, 3)
        threads: list[str] = []

        def record(*_args: object) -> None:
            threads.append(threading.current_thread().name)

        event.listen(hub.store.engine, "before_cursor_execute", record)
        try:
            body = _body(hub)
        finally:
            event.remove(hub.store.engine, "before_cursor_execute", record)
        # Only the refresher's own threads (gauges-<source>) may have queried meanwhile.
        assert [name for name in threads if not name.startswith("gauges-")] == []
        assert _backlog(body, SN) is None  # computed before the offers: not yet there
        assert "spehub_pool_profiles" in body and "spehub_corridor_records" in body
        assert "spehub_metrics_leader 1.0" in body
        assert 'spehub_metrics_source_up{source="corridors"} 1.0' in body

        clock.advance(seconds=1)
        hub.gauges.refresh()
        body = _body(hub)
        assert _backlog(body, SN) == 3
        ages = {
            s.labels["source"]: s.value
            for f in text_string_to_metric_families(body)
            for s in f.samples
            if s.name == "spehub_metrics_source_age_seconds"
        }
        assert set(ages) == {"operational_gauges", "deletion_acks_overdue", "corridors"}
        assert all(0 <= age < 60 for age in ages.values())


def test_the_gauges_are_computed_again_in_the_background(test_pki, database_url, clock):
    with started_hub(test_pki, database_url, clock, metrics_refresh_seconds=1) as hub:
        _offers(hub, test_pki, clock, 2)
        deadline = time.monotonic() + 30
        while _backlog(_body(hub), SN) != 2:
            assert time.monotonic() < deadline, "the backlog never reached the metrics"
            time.sleep(0.2)
        threads = list(hub.gauges.threads)
        assert threads and all(t.is_alive() for t in threads)
    assert not any(t.is_alive() for t in threads)  # stopped with the hub
