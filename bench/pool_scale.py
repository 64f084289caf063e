"""Pool search and matching latency with N synthetic profiles in the store.

Run: .venv/bin/python bench/pool_scale.py [--profiles 100000] [--offers 2000] [--queries 200]
     [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

A hub process (`spe-hub serve`) on a loopback port with a fresh PKI and store
is loaded with `spe-hub synth` data (a consent and a profile per candidate,
from the ten SPEs, published by each SPE over its own stream), then France
Travail runs pool searches (random ISCO-08 minor group, destination and
language filters, first page of 20) and top-50 matches of random offers, and
the script prints p50/p95 of each next to the load rate. Loopback only;
bounded by --profiles, --queries and --timeout.

Matches are measured twice over the same offers: first with no kept ranking
(every candidate of the offer's sub-major group scored: what a new offer
gets until the hub's ranking worker reaches it), then after ranking those
offers (hub.services.matching.Rankings, timed per offer: the worker's cost),
which is what an open offer gets. The hub's own worker is off during the
run, so that it does not share the cores with the queries.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spehub.v1 import exchange_pb2, exchange_pb2_grpc, pool_pb2, pool_pb2_grpc

from bench.ingest import start_hub, wait_ready
from hub import pki, synth
from hub.client import pki_channel, pki_signing_key, seal
from hub.domain.records import PayloadKind
from hub.services.matching import KEEP, Rankings
from hub.store import schema
from hub.store.engine import Store
from tests.support.processes import free_port

FT = "fr-francetravail"


def channel_for(root: Path, port: int, pid: str):  # type: ignore[no-untyped-def]
    return pki_channel(f"127.0.0.1:{port}", root, pid)


def load(root: Path, port: int, args: argparse.Namespace) -> float:
    """Publish the candidates (consent and profile) from every SPE at once. Returns records/s."""
    now = synth.now_utc()
    countries = tuple(synth.COUNTRIES)
    per = args.profiles // len(countries)
    done = {"n": 0}
    lock = threading.Lock()

    def publish(code: str) -> None:
        spe = synth.COUNTRIES[code].spe
        key_id, key = pki_signing_key(root, spe)

        def requests():  # type: ignore[no-untyped-def]
            batch = []
            for consent, profile, _personal in synth.candidates(args.seed, per, now, (code,)):
                batch.append(seal(consent, PayloadKind.CONSENT, spe, key_id, key, now))
                batch.append(seal(profile, PayloadKind.CANDIDATE_PROFILE, spe, key_id, key, now))
                if len(batch) >= args.batch:
                    yield exchange_pb2.PublishRequest(request_id="b", envelopes=batch)
                    batch = []
            if batch:
                yield exchange_pb2.PublishRequest(request_id="b", envelopes=batch)

        with channel_for(root, port, spe) as channel:
            for response in exchange_pb2_grpc.ExchangeServiceStub(channel).Publish(
                requests(), timeout=args.timeout
            ):
                with lock:
                    done["n"] += sum(
                        r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in response.results
                    )

    start = time.perf_counter()
    threads = [threading.Thread(target=publish, args=(c,)) for c in countries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout)
    elapsed = time.perf_counter() - start
    assert done["n"] == 2 * per * len(countries), f"only {done['n']} records accepted"
    return done["n"] / elapsed


def _offer_pks(store: Store, offers: list) -> list[int]:  # type: ignore[type-arg]
    with store.unit_of_work() as uow:
        return sorted(
            {
                uow.records.current(FT, PayloadKind.JOB_OFFER.payload_type, o.header.record_id)[0]  # type: ignore[index]
                for o in offers
            }
        )


def forget(database_url: str, offers: list) -> None:  # type: ignore[type-arg]
    """Drop the kept rankings of these offers, so that their matches run the full query."""
    store = Store(database_url)
    try:
        pks = _offer_pks(store, offers)
        with store.engine.begin() as conn:
            for table in (schema.match_rankings, schema.match_ranking_state):
                conn.execute(table.delete().where(table.c.offer_pk.in_(pks)))
    finally:
        store.close()


def rank(database_url: str, offers: list) -> list[float]:  # type: ignore[type-arg]
    """Rank the candidates of each offer as the hub's worker does; the time each took."""
    store = Store(database_url)
    try:
        rankings = Rankings(store, synth.now_utc)
        took = []
        for pk in _offer_pks(store, offers):
            t0 = time.perf_counter()
            rankings.rank(pk)
            took.append(time.perf_counter() - t0)
        return took
    finally:
        store.close()


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p50 {statistics.median(samples) * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20, help="searches run before measuring")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--keep",
        default="",
        help="a folder to keep the PKI and SQLite store in: a second run with the same "
        "--profiles, --offers and --seed only queries (loading a million candidates takes long)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f"loaded-{args.profiles}-{args.offers}-{args.seed}"
        loaded = marker.exists()
        root = folder / "pki"
        if not loaded:
            pki.generate_dev_pki(root)
        database_url = args.database_url or f"sqlite:///{folder / 'hub.sqlite3'}"
        port = free_port()
        hub = start_hub(root, database_url, port, SPEHUB_MATCH_RANKING_SECONDS="0")
        try:
            with channel_for(root, port, FT) as ft:
                wait_ready(ft, 60)
                if loaded:
                    print(f"{args.profiles} candidates loaded by an earlier run ({folder})")
                else:
                    rate = load(root, port, args)
                    print(f"loaded {args.profiles} candidates (consent + profile): {rate:,.0f} records/s")
                now = synth.now_utc()
                key_id, key = pki_signing_key(root, FT)
                offers = []
                for offer in synth.offers(args.seed, args.offers, now):
                    offer.header.origin_participant_id = FT
                    offer.place.country_code = offer.employer.country_code = "FR"
                    offers.append(offer)
                stub = exchange_pb2_grpc.ExchangeServiceStub(ft)
                for i in range(0, len(offers) if not loaded else 0, 500):
                    envs = [seal(o, PayloadKind.JOB_OFFER, FT, key_id, key, now) for o in offers[i : i + 500]]
                    (response,) = stub.Publish(
                        iter([exchange_pb2.PublishRequest(request_id="o", envelopes=envs)])
                    )
                    assert all(r.outcome == exchange_pb2.RECORD_OUTCOME_ACCEPTED for r in response.results)
                marker.touch()
                pool = pool_pb2_grpc.PoolServiceStub(ft)
                rng = random.Random(args.seed)  # noqa: S311 (query mix, not secrets)
                minors = sorted({code[:3] for code, _ in synth.OCCUPATIONS})
                searches = []
                for i in range(args.warmup + args.queries):
                    request = pool_pb2.SearchProfilesRequest(
                        isco08_codes=[rng.choice(minors)], destination_country_code="FR", page_size=20
                    )
                    t0 = time.perf_counter()
                    pool.SearchProfiles(request, timeout=60)
                    if i >= args.warmup:  # a hub just started reads its first pages from disk
                        searches.append(time.perf_counter() - t0)
                sample = [rng.choice(offers) for _ in range(args.queries)]

                def match_all() -> tuple[list[float], list[list[tuple[int, bytes]]]]:
                    took, found = [], []
                    for offer in sample:
                        t0 = time.perf_counter()
                        result = pool.MatchCandidates(
                            pool_pb2.MatchCandidatesRequest(
                                offer_record_id=offer.header.record_id, page_size=50
                            ),
                            timeout=120,
                        )
                        took.append(time.perf_counter() - t0)
                        found.append([(c.match.score, c.profile.payload) for c in result.candidates])
                    return took, found

                forget(database_url, sample)  # kept by an earlier run with --keep: not cold then
                cold, found = match_all()
                ranking = rank(database_url, sample)
                warm, found_warm = match_all()
                assert found_warm == found, "a kept ranking gave other candidates than the full query"
                store = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
                print(
                    f"pool search ({store}, {args.profiles} profiles, first page of 20): {percentiles(searches)}"
                )
                print(f"match top-50 ({store}, {args.profiles} profiles), offers ranked: {percentiles(warm)}")
                print(f"match top-50, no kept ranking (full query): {percentiles(cold)}")
                print(f"ranking one offer's best {KEEP} (the worker's cost): {percentiles(ranking)}")
                print(f"  (matches returned per query: median {statistics.median(map(len, found)):.0f})")
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(120)


if __name__ == "__main__":
    main()
