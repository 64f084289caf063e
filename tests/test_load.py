"""Load: 20 participants publishing, searching, matching and subscribing at once, for a bounded time.

No error other than deliberate rate limiting, no delivery lost; latency per
operation is printed (run with -s to see it). Loopback only, bounded by
DURATION seconds.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry
from spehub.v1 import delivery_pb2, exchange_pb2, offer_pb2, pool_pb2

from hub import pki, synth
from hub.bootstrap import build_hub
from hub.domain.records import PayloadKind
from tests.support.hubs import TRUST_DOMAIN, hub_settings, make_participant

DURATION = 8.0
SPE_COUNTRIES = ("SN", "ML", "MA", "BJ", "CM", "TG", "GH", "CV", "TN", "MR", "SN", "MA", "ML", "GH")
AGENCY_COUNTRIES = ("FR", "SE", "ES", "IT", "DE", "BE")


def _load_pki(root: Path):
    spes = [
        pki.DemoParticipant(f"load-spe-{i:02d}", c, "origin_spe", f"Load SPE {i} ({c})")
        for i, c in enumerate(SPE_COUNTRIES)
    ]
    agencies = [
        pki.DemoParticipant(f"load-agency-{i}", c, "destination_agency", f"Load agency {i} ({c})")
        for i, c in enumerate(AGENCY_COUNTRIES)
    ]
    pki.generate_dev_pki(root, (*spes, *agencies), trust_domain=TRUST_DOMAIN)
    return spes, agencies


class _Pki:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_pem(self) -> bytes:
        return (self.root / "ca.pem").read_bytes()

    def participant_dir(self, pid: str) -> Path:
        return self.root / "participants" / pid


@pytest.mark.slow
def test_twenty_participants_at_once(tmp_path, database_url, clock, capsys):
    root = tmp_path / "pki"
    spes, agencies = _load_pki(root)
    test_pki = _Pki(root)
    settings = hub_settings(
        test_pki,  # type: ignore[arg-type]
        database_url,
        registry_file=root / "registry.json",
        token_keys_dir=root / "hub" / "token-keys",
        master_key_file=root / "hub" / "master.key",
        tls_cert_file=root / "hub" / "server.pem",
        tls_key_file=root / "hub" / "server-key.pem",
        client_ca_file=root / "ca.pem",
        rate_limit_per_second=30.0,
        rate_limit_burst=40,
        workers=64,  # more than the calls 20 participants can have in flight: only rate limits refuse
    )
    hub = build_hub(settings, clock=clock, metrics_registry=CollectorRegistry())
    _seen.clear()
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    details: list[str] = []
    published_offers: dict[str, set[str]] = defaultdict(set)  # country -> offer ids accepted for it
    lock = threading.Lock()
    stop = time.monotonic() + DURATION

    def timed(op: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            result = fn()
        except grpc.RpcError as exc:
            code = exc.code().name
            # A token the hub would not issue because of the rate limit reaches the client as the token
            # plugin's UNAVAILABLE, carrying the hub's RESOURCE_EXHAUSTED: deliberate rate limiting too.
            if code == "UNAVAILABLE" and "RESOURCE_EXHAUSTED" in (exc.details() or ""):
                code = "RESOURCE_EXHAUSTED"
            with lock:
                errors[code] += 1
                details.append(f"{op}: {code}: {exc.details()}")
            return None
        with lock:
            latencies[op].append(time.perf_counter() - t0)
        return result

    def spe_loop(spe) -> None:  # type: ignore[no-untyped-def]
        p = make_participant(hub.port, test_pki, spe.id, clock)  # type: ignore[arg-type]
        made = synth.candidates(hash(spe.id) % 1000, 10_000, synth.now_utc(), (spe.country_code,))
        while time.monotonic() < stop:
            batch = []
            for consent, profile, personal in (next(made) for _ in range(5)):
                for record, kind in (
                    (consent, PayloadKind.CONSENT),
                    (profile, PayloadKind.CANDIDATE_PROFILE),
                    (personal, PayloadKind.PERSONAL_DETAILS),
                ):
                    record.header.origin_participant_id = spe.id
                    batch.append(p.seal(record, kind))
            timed("publish candidates", lambda batch=batch: p.publish_one_batch(batch))
            timed("subscribe and acknowledge", lambda: _drain(p))
        p.channel.close()

    def agency_loop(agency, n) -> None:  # type: ignore[no-untyped-def]
        p = make_participant(hub.port, test_pki, agency.id, clock)  # type: ignore[arg-type]
        i = 0
        while time.monotonic() < stop:
            offer = next(synth.offers(n, 1, synth.now_utc(), start=i))
            i += 1
            offer.header.origin_participant_id = agency.id
            offer.header.record_id = f"{agency.id}-o{i}"
            offer.place.country_code = offer.employer.country_code = agency.country_code
            results = timed(
                "publish offer",
                lambda offer=offer: p.publish_one_batch([p.seal(offer, PayloadKind.JOB_OFFER)]),
            )
            if results and results[0].outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED:
                with lock:
                    for country in offer.target_country_codes:
                        published_offers[country].add(offer.header.record_id)
            timed(
                "search profiles",
                lambda: p.pool.SearchProfiles(pool_pb2.SearchProfilesRequest(page_size=20), timeout=30),
            )
            if not (results and results[0].outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED):
                continue  # refused by the rate limit: nothing to match
            timed(
                "match candidates",
                lambda offer=offer: p.pool.MatchCandidates(
                    pool_pb2.MatchCandidatesRequest(offer_record_id=offer.header.record_id, page_size=50),
                    timeout=30,
                ),
            )
        p.channel.close()

    threads = [threading.Thread(target=spe_loop, args=(s,)) for s in spes]
    threads += [threading.Thread(target=agency_loop, args=(a, n)) for n, a in enumerate(agencies)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(DURATION + 120)
        time.sleep(2)  # the rate buckets refill before the final reads
        # No loss: every SPE receives every offer addressed to its country.
        received: dict[str, set[str]] = {}
        for spe in spes:
            p = make_participant(hub.port, test_pki, spe.id, clock)  # type: ignore[arg-type]
            received[spe.id] = _drain(p, collect=True)
            p.channel.close()
    finally:
        hub.stop(0)
    assert set(errors) <= {"RESOURCE_EXHAUSTED"}, [d for d in details if "RESOURCE_EXHAUSTED" not in d][:5]
    assert all("rate limit of" in d for d in details), [d for d in details if "rate limit of" not in d][:3]
    for spe in spes:
        # Offers are routed to every SPE of a target country; an SPE may also have drained some already.
        assert published_offers[spe.country_code] <= received[spe.id], spe.id
    with capsys.disabled():
        print(
            f"\n20 participants for {DURATION:.0f} s; refused by rate limiting: {errors.get('RESOURCE_EXHAUSTED', 0)}"
        )
        for op, samples in sorted(latencies.items()):
            q = statistics.quantiles(samples, n=20) if len(samples) > 1 else samples * 19
            print(
                f"  {op:28} {len(samples):5} calls  p50 {statistics.median(samples) * 1000:7.1f} ms  p95 {q[18] * 1000:7.1f} ms"
            )
    assert sum(len(v) for v in latencies.values()) > 100


_seen: dict[str, set[str]] = defaultdict(set)


def _drain(p, collect: bool = False) -> set[str]:  # type: ignore[no-untyped-def]
    """Read what is pending for the participant and acknowledge it; remember which offers arrived."""
    last = 0
    for response in p.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30):
        d = response.delivery
        last = d.sequence
        if d.envelope.payload_type == PayloadKind.JOB_OFFER.payload_type:
            _seen[p.id].add(offer_pb2.JobOffer.FromString(d.envelope.payload).header.record_id)
    if last:
        p.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=last), timeout=30)
    return set(_seen[p.id]) if collect else set()
