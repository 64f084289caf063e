"""Two real hub processes on one database, driven at once: nothing lost, nothing doubled, the audit chain whole."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from spehub.v1 import consent_pb2, delivery_pb2, exchange_pb2, offer_pb2, pool_pb2

from hub import synth
from hub.domain.records import PayloadKind
from hub.domain.tokens import HubKeyRing
from hub.services.audit import AuditService
from hub.store.engine import Store
from tests.support.hubs import TRUST_DOMAIN, make_participant
from tests.support.processes import HubProcess, hub_env

pytestmark = pytest.mark.processes  # starts hubs as processes of their own


SN, ML, FT = "sn-anpej", "ml-anpe", "fr-francetravail"
CANDIDATES, OFFERS = 120, 40


@pytest.fixture
def replicas(test_pki, database_url, tmp_path):
    env = hub_env(test_pki.root, database_url, f"sqlite:///{tmp_path / 'keys.sqlite3'}", TRUST_DOMAIN)
    hubs = []
    try:
        for name in ("a", "b"):  # started together: the migration takes turns
            hubs.append(HubProcess.start(env, tmp_path / f"hub-{name}.log", tmp_path))
        yield hubs
    finally:
        for hub in hubs:
            hub.stop()


def _batches(records, size=60):
    items = list(records)
    return [items[i : i + size] for i in range(0, len(items), size)]


def test_two_hub_processes_serve_one_store_correctly(replicas, test_pki, database_url, clock):
    a, b = replicas
    now = synth.now_utc()
    parties = {
        (pid, hub.port): make_participant(hub.port, test_pki, pid, clock)
        for pid in (SN, ML, FT)
        for hub in (a, b)
    }

    def publish(pid, hub, kind_records):
        p = parties[(pid, hub.port)]
        outcomes = []
        for batch in _batches(kind_records):
            results = p.publish_one_batch([p.seal(r, k) for k, r in batch])
            outcomes += [(r.record_id, r.outcome) for r in results]
        return outcomes

    def candidates(country):
        out = []
        for consent, profile, personal in synth.candidates(9, CANDIDATES, now, (country,)):
            out += [(PayloadKind.CONSENT, consent), (PayloadKind.CANDIDATE_PROFILE, profile)]
            out += [(PayloadKind.PERSONAL_DETAILS, personal)]
        return out

    sn_records, ml_records = candidates("SN"), candidates("ML")
    offers = []
    for i in range(OFFERS):
        offer = next(synth.offers(5, 1, now, start=i))
        offer.header.origin_participant_id = FT
        offer.place.country_code = offer.employer.country_code = "FR"
        offer.target_country_codes[:] = ["SN", "ML"]
        offers.append((PayloadKind.JOB_OFFER, offer))

    # At once: each SPE through one process and again through the other (the retry of a client
    # that switched replicas), and France Travail's offers split across both.
    with ThreadPoolExecutor(max_workers=6) as pool:
        jobs = [
            pool.submit(publish, SN, a, sn_records),
            pool.submit(publish, SN, b, sn_records),
            pool.submit(publish, ML, b, ml_records),
            pool.submit(publish, ML, a, ml_records),
            pool.submit(publish, FT, a, offers[: OFFERS // 2]),
            pool.submit(publish, FT, b, offers[OFFERS // 2 :]),
        ]
        results = [job.result(timeout=300) for job in jobs]
    accepted = {}
    for outcomes in results:
        for record_id, outcome in outcomes:
            assert outcome in (exchange_pb2.RECORD_OUTCOME_ACCEPTED, exchange_pb2.RECORD_OUTCOME_DUPLICATE)
            accepted.setdefault(record_id, []).append(outcome)
    # Every record stored once: accepted by exactly one process, a duplicate for the other.
    for record_id, outcomes in accepted.items():
        if record_id.startswith("O-"):
            assert outcomes == [exchange_pb2.RECORD_OUTCOME_ACCEPTED]
        else:
            assert sorted(outcomes) == [
                exchange_pb2.RECORD_OUTCOME_ACCEPTED,
                exchange_pb2.RECORD_OUTCOME_DUPLICATE,
            ]
    store = Store(database_url)
    with store.unit_of_work() as uow:
        assert uow.records.count_envelopes() == 2 * 3 * CANDIDATES + OFFERS

    # Consent withdrawn through one process hides the candidate from searches through the other at once.
    sn_b = parties[(SN, b.port)]
    withdrawn = []
    for kind, record in sn_records[:30]:
        if kind is PayloadKind.CONSENT:
            record.header.version = 2
            record.status = consent_pb2.CONSENT_STATUS_WITHDRAWN
            withdrawn.append(sn_b.seal(record, kind))
    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in sn_b.publish_one_batch(withdrawn))
    withdrawn_profiles = {
        f"P-{r.header.record_id[2:]}" for k, r in sn_records[:30] if k is PayloadKind.CONSENT
    }
    visible, token = set(), ""
    ft_a = parties[(FT, a.port)]
    while True:
        request = pool_pb2.SearchProfilesRequest(origin_country_codes=["SN"], page_size=100, page_token=token)
        page = ft_a.pool.SearchProfiles(request, timeout=30)
        visible |= {_record_id(h) for h in page.profiles}
        token = page.next_page_token
        if not token:
            break
    assert visible and not visible & withdrawn_profiles

    # Subscriptions: Senegal reads its offers alternately through both processes, acknowledging as it goes.
    seen, sequences = [], []
    for hub in (a, b, a, b):
        p = parties[(SN, hub.port)]
        for response in p.delivery.Subscribe(
            delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30
        ):
            d = response.delivery
            sequences.append(d.sequence)
            seen.append(offer_pb2.JobOffer.FromString(d.envelope.payload).header.record_id)
            if len(seen) % 7 == 0:
                p.delivery.Acknowledge(delivery_pb2.AcknowledgeRequest(sequence=d.sequence), timeout=10)
                break  # the next read, through the other process, resumes after the acknowledged cursor
    p = parties[(SN, b.port)]
    for response in p.delivery.Subscribe(delivery_pb2.SubscribeRequest(stop_when_drained=True), timeout=30):
        sequences.append(response.delivery.sequence)
        seen.append(offer_pb2.JobOffer.FromString(response.delivery.envelope.payload).header.record_id)
        p.delivery.Acknowledge(
            delivery_pb2.AcknowledgeRequest(sequence=response.delivery.sequence), timeout=10
        )
    assert sorted(set(seen)) == sorted(o.header.record_id for _, o in offers)  # nothing lost
    assert len(sequences) == len(
        set(sequences)
    )  # a delivery read twice is one not yet acknowledged, never a new one

    # The audit chain, written by both processes at once, verifies end to end.
    count, problems = AuditService(
        store, HubKeyRing.load(test_pki.root / "hub" / "token-keys"), synth.now_utc
    ).verify()
    assert problems == [] and count >= 2 * 3 * CANDIDATES + OFFERS
    store.close()
    for p in parties.values():
        p.channel.close()
    assert a.stop() == 0 and b.stop() == 0


def _record_id(hit) -> str:
    from spehub.v1 import profile_pb2

    return profile_pb2.CandidateProfile.FromString(hit.profile.payload).header.record_id
